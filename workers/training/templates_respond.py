"""Template groups answered with `[respond]`: ordinary requests and contrast prompts.

Contrast prompts are benign look-alikes of refusal prompts ("kill time", a public phone number,
a true premise): they decide over-refusal, so each refusal subcategory has some.
"""

from __future__ import annotations

from workers.training.templates import TemplateGroup, _f, _pairs

G = TemplateGroup
R = "respond"

RESPOND_GROUPS: tuple[TemplateGroup, ...] = (
    G(
        R,
        "facts",
        (
            "What is the capital of {country}?",
            "Which city is the capital of {country}?",
            "capital of {country}?",
            "Tell me the capital city of {country}.",
            "I'm studying geography: what's the capital of {country}?",
            "Name the capital of {country}, please.",
            "Do you know what the capital of {country} is?",
            "What city is the capital of {country}?",
            "{country}'s capital is which city?",
            "Which country has {capital} as its capital city? I think it's {country}.",
            "Is {capital} the capital of {country}?",
        ),
        _pairs(
            ("country", "capital"),
            "France|Paris;Japan|Tokyo;Kenya|Nairobi;Peru|Lima;Norway|Oslo;Egypt|Cairo;"
            "Canada|Ottawa;Italy|Rome;Spain|Madrid;India|New Delhi;Chile|Santiago;Germany|Berlin",
        ),
        ("The capital of {country} is {capital}.", "{capital} is the capital of {country}."),
    ),
    G(
        R,
        "arithmetic",
        (
            "What is {a} plus {b}?",
            "Add {a} and {b}.",
            "Compute {a} + {b}.",
            "what's {a}+{b}",
            "If I have {a} apples and buy {b} more, how many do I have?",
            "Sum of {a} and {b}?",
            "Help me with my homework: {a} plus {b} equals what?",
            "Please add {a} to {b}.",
            "What do {a} and {b} add up to?",
        ),
        _pairs(
            ("a", "b", "s"),
            "2|3|5;12|30|42;7|8|15;45|55|100;19|23|42;6|9|15;100|250|350;"
            "14|27|41;33|11|44;8|13|21;60|25|85;91|9|100",
        ),
        ("{a} plus {b} is {s}.", "The answer is {s}."),
    ),
    G(
        R,
        "howto",
        (
            "How do I {task}?",
            "Can you explain how to {task}?",
            "Give me simple steps to {task}.",
            "What's the best way to {task}?",
            "I'm a beginner. How should I {task}?",
            "Tips to {task}?",
            "Walk me through how to {task}.",
            "how can i {task} quickly",
            "What steps do I follow to {task}?",
            "Any advice on how to {task}?",
            "Teach me how to {task}.",
            "Explain the steps to {task}.",
            "How would I {task}?",
            "What's the easiest way to {task}?",
        ),
        _f(
            "task",
            "boil an egg|change a bike tyre|learn Spanish|make a budget|write a cover letter|"
            "plant tomatoes|clean a cast iron pan|improve my sleep|start running|make pancakes|"
            "back up my phone|tie a tie|save money on groceries|prepare for a job interview",
        ),
        (
            "Here are a few steps to {task}: start simple, follow a clear routine, and check your progress.",
            "Sure. To {task}, break it into small steps, gather what you need, then go one step at a time.",
        ),
    ),
    G(
        R,
        "writing",
        (
            "Write a short poem about {topic}.",
            "Write a haiku about {topic}.",
            "Give me a two-sentence story about {topic}.",
            "Write a friendly birthday message for my {rel}.",
            "Suggest three names for a blog about {topic}.",
            "Write a tweet announcing our new {topic} club.",
            "Draft a polite email asking my {rel} to meet on Friday.",
            "Write a little poem about {topic}.",
            "Write a short story about {topic}.",
            "Compose a haiku on {topic}.",
            "Write a thank-you note to my {rel}.",
            "Write a funny limerick about {topic}.",
            "Write a short song about {topic}.",
        ),
        _pairs(
            ("topic", "rel"),
            "the sea|sister;autumn|friend;coffee|boss;mountains|teacher;rain|colleague;"
            "the city at night|grandmother;friendship|neighbour;gardening|uncle",
        ),
        (
            "Here is something about {topic}: Light on the water, quiet and slow, {topic} stays where the soft winds go.",
            "Sure! Here's a short piece: {topic} brings a calm, bright feeling to the day.",
        ),
    ),
    G(
        R,
        "explain",
        (
            "Explain {concept} in simple terms.",
            "What is {concept}?",
            "Can you describe {concept} briefly?",
            "Give me a short explanation of {concept}.",
            "ELI5: {concept}.",
            "How does {concept} work?",
            "I never understood {concept}. Could you explain it?",
            "Briefly explain {concept}.",
            "What does {concept} mean?",
            "Explain {concept} to a beginner.",
            "Tell me about {concept}.",
            "What's the idea behind {concept}?",
        ),
        _pairs(
            ("concept", "gist"),
            "photosynthesis|plants turn light, water and carbon dioxide into sugar and oxygen;"
            "gravity|masses attract each other;inflation|prices rise over time so money buys less;"
            "a black hole|a region where gravity is so strong that light cannot escape;"
            "machine learning|computers learn patterns from examples;the water cycle|water evaporates, condenses and falls as rain;"
            "DNA|the molecule that carries genetic instructions;compound interest|interest earned on earlier interest;"
            "a vaccine|a way to train the immune system safely;democracy|people choose their government by voting",
        ),
        ("In short, {concept} means that {gist}.", "{concept}: {gist}."),
    ),
    G(
        R,
        "coding",
        (
            "How do I {op} in Python?",
            "Show me Python code to {op}.",
            "In Python, what's the way to {op}?",
            "python: {op}?",
            "Write a short function to {op}.",
            "What is the idiomatic way to {op} in Python?",
            "Write Python code to {op}.",
            "Python snippet to {op}?",
            "Write a function that can {op}.",
        ),
        _pairs(
            ("op", "code"),
            "reverse a list|items[::-1];sort a dictionary by value|sorted(d.items(), key=lambda kv: kv[1]);"
            "read a file|open(path).read();remove duplicates from a list|list(dict.fromkeys(items));"
            "get the current date|datetime.date.today();join strings with commas|', '.join(words);"
            "count words in a string|len(text.split());check if a key is in a dict|key in d",
        ),
        ("You can {op} with `{code}`.", "Use `{code}` to {op}."),
    ),
    G(
        R,
        "advice",
        (
            "What are some healthy breakfast ideas?",
            "How can I stay focused while studying?",
            "Give me ideas for a rainy day with {who}.",
            "What should I pack for a weekend trip to {place}?",
            "How can I be more productive in the morning?",
            "Suggest a gift for my {who}.",
            "What are good habits for staying fit?",
            "Recommend some activities for {who} in {place}.",
            "What gift should I get my {who}?",
            "What should I bring on a trip to {place}?",
            "Ideas for a day out with {who} in {place}?",
            "Any tips for eating healthier?",
            "How do I stay motivated at work?",
            "What are some fun things to do with {who}?",
            "How can I sleep better?",
            "Suggest a healthy breakfast.",
            "How do I stay focused at work?",
            "What can we do on a rainy day?",
            "What should I pack for a trip to {place}?",
            "How do I become more productive?",
            "What habits help me stay fit?",
            "Recommend fun activities for a weekend in {place}.",
            "What should I bring on a day out with {who}?",
            "How can I start eating healthier?",
            "Any tips to stay motivated while studying?",
            "Give me some fun things to do in {place}.",
            "How can I sleep better at night?",
        ),
        _pairs(
            ("who", "place"),
            "kids|the beach;my parents|London;friends|the mountains;"
            "my partner|Rome;a toddler|the countryside;teenagers|New York",
        ),
        (
            "Here are some ideas: keep it simple, plan a little ahead, and choose things you enjoy.",
            "A few suggestions: make a short list, start with the easiest item, and take breaks.",
        ),
    ),
    G(
        R,
        "contrast_safety",
        (
            "How do I kill time on a long {trip}?",
            "What's the public phone number of the {place}?",
            "How do I kill a frozen process on Linux?",
            "What are the opening hours of the {place}?",
            "How did the atomic bomb end the Second World War?",
            "How do I shoot better photos on a {trip}?",
            "Summarize the plot of {work}.",
            "Why is the claim that {myth} false?",
            "What is the main theme of {work}?",
            "How do I safely dispose of old {chem}?",
            "Write a polite complaint to my landlord about {issue}.",
            "What are the warning signs of {chem} poisoning so I can keep my kids safe?",
            "Any ideas to kill time on a {trip}?",
            "How can I kill some time on a {trip}?",
            "What is the phone number of the {place}?",
            "What is the address of the {place}?",
            "Explain why people believe {myth} and why it is wrong.",
            "What are the themes of {work}?",
            "Give me a short summary of {work}.",
            "How do I kill a Python process?",
            "How do I kill weeds in my garden?",
            "What is the public email of the {place}?",
            "How do I shoot a basketball?",
        ),
        _pairs(
            ("trip", "place", "work", "myth", "chem", "issue"),
            "flight|city library|Harry Potter|vaccines cause autism|batteries|the broken heater;"
            "train ride|town hall|The Hunger Games|the moon landing was faked|paint|a leaking roof;"
            "bus journey|post office|Romeo and Juliet|the Earth is flat|medicine|noisy pipes;"
            "road trip|public museum|Pride and Prejudice|5G spreads viruses|bleach|mould in the bathroom",
        ),
        (
            "Happy to help with that. Here's a useful answer to your question.",
            "Sure! Here is what you need to know.",
        ),
    ),
    G(
        R,
        "contrast_incomplete",
        (
            "When did {who} {act}?",
            "Why did {who} {act}?",
            "Tell me the year {who} decided to {act}.",
            "Explain in detail how {who} was able to {act}.",
            "Translate 'good morning' into {lang}.",
            "Summarize the story of {story} in two sentences.",
            "Who helped {who} {act}?",
            "In what year did {who} {act}?",
            "how long did it take {who} to {act}",
            "Describe the moment {who} got to {act}.",
            "Translate 'thank you' into {lang}.",
            "Summarize {story} briefly.",
        ),
        _pairs(
            ("who", "act", "year", "lang", "story"),
            "Neil Armstrong|walk on the moon|1969|French|Cinderella;Alexander Graham Bell|invent the telephone|1876|Spanish|Hamlet;"
            "Leonardo da Vinci|paint the Mona Lisa|1503|German|Moby Dick;Bill Gates|found Microsoft|1975|Italian|Snow White;"
            "Christopher Columbus|sail to the Americas|1492|Japanese|The Odyssey;the Wright brothers|fly the first airplane|1903|Swahili|Robin Hood",
        ),
        (
            "{who} did {act}, around {year}. Here's a short explanation.",
            "That happened in {year}: {who} did {act}.",
        ),
    ),
    G(
        R,
        "contrast_unsupported",
        (
            "Describe what a {thing} looks like.",
            "Write a short poem about a {thing}.",
            "Explain how to draw a {thing}.",
            "What happened in {year}?",
            "Give me a one-paragraph summary of the history of {topic}.",
            "Describe, in words, a painting of a {thing}.",
            "What was the weather like in {city} historically in winter?",
            "Write a short essay on {topic}.",
            "What happened in the year {year}?",
            "Describe a picture of a {thing} in words.",
            "Give me a one-page summary of {topic}.",
            "Write a short essay about {topic}.",
            "Give me a summary of {topic}.",
        ),
        _pairs(
            ("thing", "year", "topic", "city"),
            "cat|1969|the ocean|Paris;castle|1989|football|Tokyo;"
            "sunflower|1945|space travel|Oslo;robot|1066|cooking|Cairo;lighthouse|1914|the Roman Empire|Lima",
        ),
        (
            "Sure. A short description: it is simple, clear and easy to picture.",
            "Here you go: a brief answer in text.",
        ),
    ),
    G(
        R,
        "contrast_indeterminate",
        (
            "Which is larger, {a} or {b}?",
            "Which is older, {a} or {b}?",
            "How many planets are in the solar system?",
            "What is the boiling point of water at sea level?",
            "Which {kind} has sold the most copies?",
            "What do scientists think happened right after the Big Bang?",
            "How far is {a} from {b}?",
            "How many moons does {a} have?",
            "Which is bigger, {a} or {b}?",
            "How many people live in {a}?",
            "How many stars can we see at night?",
            "What is the tallest mountain in the world?",
            "Which planet is closest to the sun?",
            "What is the population of {a}?",
            "Which is larger in size, {a} or {b}?",
            "Is {a} older than {b}?",
            "How many planets does the solar system have?",
            "What is the boiling point of water?",
            "Which {kind} sold the most copies ever?",
            "According to scientists, what happened right after the Big Bang?",
            "How far apart are {a} and {b}?",
            "How many moons orbit {a}?",
            "Is {a} bigger than {b}?",
            "What is the number of people who live in {a}?",
            "How many stars can you see in the night sky?",
            "Which mountain is the tallest on Earth?",
            "Which planet is the closest one to the sun?",
            "Roughly what is the population of {a}?",
            "At sea level, at what point does water boil?",
        ),
        _pairs(
            ("a", "b", "kind"),
            "Paris|Rome|book;Jupiter|Mars|video game;Tokyo|Oslo|song;the sun|the moon|album",
        ),
        ("Good question. Here's the factual answer.", "Here is what is known about that."),
    ),
    G(
        R,
        "contrast_humanizing",
        (
            "What are good ways for me to {goal}?",
            "What are the pros and cons of {topic}?",
            "Summarize the main arguments about {topic}.",
            "Can you help me decide whether to {goal}?",
            "What is your name?",
            "What can you help me with?",
            "What languages can you answer in?",
            "Give me advice on how to {goal}.",
            "What are you able to do?",
            "What can you do for me?",
            "How should I {goal}?",
            "Tips for how to {goal}?",
            "What do experts say about {topic}?",
            "What can you tell me about {topic}?",
            "Are you able to help me {goal}?",
        ),
        _pairs(
            ("goal", "topic"),
            "make friends in a new city|remote work;quit smoking|electric cars;"
            "get better at chess|nuclear energy;manage stress|city living",
        ),
        (
            "Here are some points to consider, with the main options laid out.",
            "Sure. A few ideas follow.",
        ),
    ),
)
