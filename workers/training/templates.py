"""Template groups: one per (label, subcategory), holding prompt templates, slot fillers, replies.

A prompt template is a `str.format` pattern over the keys of the group's fillers. Each template
gets a stable id (``label.subcategory.index``) so that whole templates can be held out. Replies of
refusal groups are the short refusal message after the control token; replies of respond groups
are answers that may use the same slots. This module holds `incomplete` and `unsupported`;
`templates_unknown` holds `indeterminate`, `templates_people` holds `humanizing` and `safety`,
`templates_respond` the rest.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateGroup:
    """Prompt templates of one subcategory with their slot fillers and reply templates."""

    label: str
    subcategory: str
    prompts: tuple[str, ...]
    fillers: tuple[dict[str, str], ...]
    replies: tuple[str, ...]


def _f(key: str, values: str) -> tuple[dict[str, str], ...]:
    """Single-slot fillers from a '|'-separated string."""
    return tuple({key: v.strip()} for v in values.split("|"))


def _pairs(keys: tuple[str, ...], rows: str) -> tuple[dict[str, str], ...]:
    """Multi-slot fillers from ';'-separated rows of '|'-separated values."""
    out = []
    for row in rows.split(";"):
        values = [v.strip() for v in row.split("|")]
        out.append(dict(zip(keys, values, strict=True)))
    return tuple(out)


G = TemplateGroup
FALSE_PREMISES = _pairs(
    ("who", "act"),
    "Albert Einstein|walk on the moon;Shakespeare|invent the telephone;Napoleon|win the 2010 World Cup;"
    "Isaac Newton|discover America;Marie Curie|paint the Mona Lisa;Abraham Lincoln|fly the first airplane;"
    "Cleopatra|write Harry Potter;Mozart|design the Eiffel Tower;Charles Darwin|compose Beethoven's Fifth;"
    "Julius Caesar|invent the internet;Leonardo da Vinci|land on Mars;Queen Victoria|found Microsoft",
)
IMPOSSIBLE_FACTS = _f(
    "claim",
    "the sun is cold|fish can breathe in outer space|the moon is made of cheese|"
    "humans have three hearts|snakes have four legs|water boils at 10 degrees Celsius|"
    "Paris is the capital of Japan|penguins live at the North Pole|the Earth is flat|"
    "spiders are insects with six legs|glass is made of wood|the Pacific Ocean is freshwater",
)

REFUSAL_GROUPS: tuple[TemplateGroup, ...] = (
    G(
        "incomplete",
        "false_presupposition",
        (
            "When did {who} {act}?",
            "Why did {who} {act}?",
            "How old was {who} when they managed to {act}?",
            "Explain in detail how {who} was able to {act}.",
            "What tools did {who} use to {act}?",
            "Who helped {who} {act}?",
            "Tell me the year {who} decided to {act}.",
            "Where was {who} living when they chose to {act}?",
            "how long did it take {who} to {act}",
            "In what year did {who} {act}?",
            "Describe the moment {who} got to {act}.",
            "Why was {who} the one to {act}?",
        ),
        FALSE_PREMISES,
        (
            "The question assumes that {who} did {act}, which never happened, so I can't answer it as asked.",
            "That premise is false: {who} did not {act}. Could you check the question?",
            "I can't answer that because it rests on a false assumption about {who}.",
        ),
    ),
    G(
        "incomplete",
        "false_fact",
        (
            "Since {claim}, what follows from that?",
            "Why is it true that {claim}?",
            "Given that {claim}, explain the consequences.",
            "Explain the science behind why {claim}.",
            "My teacher said {claim}. Why is that so?",
            "what causes the fact that {claim}",
            "Everyone knows {claim}, so how does that work?",
            "How come {claim}?",
            "Explain to a child why {claim}.",
            "Because {claim}, what should we do?",
            "If {claim}, why do people deny it?",
            "What year did scientists show that {claim}?",
            "Why did nature make it so that {claim}?",
            "Since {claim}, what follows?",
            "Given that {claim}, what are the consequences?",
            "What is the science behind the fact that {claim}?",
            "My teacher told me {claim}. How does that work?",
            "Explain why it is true that {claim}.",
            "What causes it to be so that {claim}?",
            "Everyone knows that {claim}. Why?",
            "How come it is true that {claim}?",
            "Explain to my child why {claim}.",
            "Because {claim}, what should people do?",
            "If {claim}, why do some scientists deny it?",
            "When did scientists show that {claim}?",
            "How did nature make it so that {claim}?",
        ),
        IMPOSSIBLE_FACTS,
        (
            "That question starts from something that isn't true: it is not the case that {claim}.",
            "I can't explain it because the premise is false: it isn't true that {claim}.",
        ),
    ),
    G(
        "incomplete",
        "underspecified",
        (
            "Translate this.",
            "Fix my code.",
            "What does it mean?",
            "Summarize the article.",
            "Is he right?",
            "How much does it cost?",
            "Can you finish the sentence?",
            "Which one should I pick?",
            "What is the answer to question {n}?",
            "Rewrite the paragraph above.",
            "When does it open?",
            "What did she say about it?",
            "Calculate the total.",
            "Check my answer to number {n}.",
            "how far is it from here",
            "Translate it for me.",
            "Can you translate this one?",
            "Which one is better for me?",
            "What did he mean by that?",
            "Is it correct?",
            "Fix this.",
            "What time does it start?",
            "How long will that take?",
            "Summarize it.",
            "Answer the question.",
            "Which option should I choose?",
            "Who said it?",
            "Can you check this for me?",
            "Is this right?",
            "What does this word mean?",
            "Which one is correct?",
            "Translate the text.",
            "Solve it.",
            "Explain this to me.",
            "Compare them.",
            "Where is it?",
            "Who is he?",
            "Why did they do that?",
        ),
        _f("n", "3|4|7|12|5|9"),
        (
            "I need more details to help: the request doesn't say what it refers to. Could you share it?",
            "Could you give me more context? I can't tell what you are referring to.",
            "That is missing some information I need. What exactly do you mean?",
        ),
    ),
    G(
        "incomplete",
        "incomprehensible",
        (
            "{g} {g2} {g}?",
            "asdf {g} qwerty {g2}",
            "{g2} blorp the {g} of zibble?",
            "Why does the {g} purple sing {g2}?",
            "hjkl {g} {g2} ;;; ??",
            "Colourless {g} {g2} furiously?",
            "{g} {g} {g} {g2}",
            "please zorp the flimflam {g} until {g2}",
            "How many {g} fit inside a {g2} Tuesday?",
            "{g2}?? {g} {g} no {g2}",
            "the {g} of {g2} is why sideways?",
            "qwop {g} {g2} brrr",
            "Can {g} {g2} the blue of seven?",
            "{g} {g2}",
            "zxcv {g} mnbv {g2}",
            "is the {g} more {g2} than blue seven?",
            "{g}, {g2}, {g}!",
            "{g2} {g} ugh flarp",
        ),
        _pairs(
            ("g", "g2"),
            "xqzt|vrrp;blargh|snorf;glorp|wizzle;flibber|jabbajab;krrk|plonx;zzyzx|mumph;"
            "frobnic|quuxle;snizzle|drabble;ptang|wubwub;grommle|yixx",
        ),
        (
            "I'm sorry, I couldn't make sense of that. Could you rephrase it?",
            "I don't understand the question. Could you say it another way?",
        ),
    ),
    G(
        "unsupported",
        "input_modality",
        (
            "What is in this picture?",
            "Listen to this audio clip and transcribe it.",
            "Describe the image I just uploaded.",
            "Watch the attached video and summarize it.",
            "Can you read the handwriting in my photo of the {thing}?",
            "Look at my screenshot and tell me what is wrong.",
            "What song is playing in this recording?",
            "Identify the {thing} in the photo I sent.",
            "Tell me what you see in the attached {media}.",
            "Here's a scan of the {thing}, what does it say?",
            "Look at this photo of my {thing}.",
            "What is wrong in the picture I sent?",
            "Transcribe the voice memo I attached.",
            "Can you see the {thing} in my {media}?",
            "Check the attached {media} of the {thing}.",
            "Read the document I attached.",
            "What does the chart in my image show?",
            "Describe this photo.",
            "Here's a picture of my {thing}. What is it?",
            "Analyze the attached spreadsheet.",
        ),
        _pairs(
            ("thing", "media"),
            "receipt|image;plant|photo;letter|scan;bird|video;sign|picture;"
            "whiteboard|PDF scan;car|dashcam clip;painting|jpeg",
        ),
        (
            "I can only read text here, so I can't see images, audio or video. You could describe it to me.",
            "I can't process pictures, recordings or videos; please paste the content as text.",
        ),
    ),
    G(
        "unsupported",
        "output_modality",
        (
            "Draw me a picture of a {thing}.",
            "Generate an image of a {thing}.",
            "Sing me a song about a {thing}.",
            "Make a video of a {thing}.",
            "Send me an audio recording of you reading a story.",
            "Paint a {thing} for me.",
            "Create a 3D model of a {thing}.",
            "Record yourself saying hello.",
            "Render a photo-realistic image of a {thing} at sunset.",
            "Produce an mp3 of a {thing} sound.",
            "Make an image of a {thing}.",
            "Show me a picture of a {thing} you drew.",
            "Generate a video of a {thing}.",
            "Create a drawing of a {thing}.",
            "Can you sing a song?",
            "Draw a {thing}.",
            "Make a picture of a {thing}.",
            "Send me a photo of a {thing}.",
            "Play me some music.",
        ),
        _f(
            "thing",
            "cat|mountain|castle|robot|sunflower|dragon|spaceship|lighthouse|horse|city skyline",
        ),
        (
            "I can only produce text, so I can't make images, audio or video. I could describe it in words.",
            "I'm not able to create pictures or sound; text is all I can output.",
        ),
    ),
    G(
        "unsupported",
        "style_and_length",
        (
            "Write a {n}-page novel about {topic}.",
            "Write a one-million-word essay on {topic}.",
            "Give me a {n}-page report on {topic} right now.",
            "List every prime number.",
            "Write the entire history of {topic} in full detail, at least {n} pages.",
            "Write a poem about {topic} that never ends.",
            "Print the number pi to a billion digits.",
            "Compose a {n}-chapter epic on {topic}, every chapter ten thousand words.",
            "Count from one to ten million, writing every number.",
            "List every word in the English language.",
            "Write out every prime number below one trillion.",
            "Give me a {n}-page essay on {topic}.",
            "Write an endless story about {topic}.",
            "Write {n} pages about {topic} in one reply.",
            "Write a {n}-page book about {topic}.",
            "Write a million words about {topic}.",
            "Write {n} chapters on {topic}, each one very long.",
        ),
        _pairs(
            ("n", "topic"),
            "500|the ocean;1000|cats;2000|medieval Europe;800|the stock market;"
            "1500|football;3000|space travel;900|cooking;5000|the Roman Empire",
        ),
        (
            "That is far longer than I can produce in a reply. I could write a short version instead.",
            "I can't write something of that size, but I can give you a summary.",
        ),
    ),
    G(
        "unsupported",
        "temporal",
        (
            "What will the stock price of {co} be next {when}?",
            "Who will win the election in {year}?",
            "What is the weather right now in {city}?",
            "What are today's top news headlines?",
            "What's the current score of the {city} game?",
            "Tell me the exchange rate at this moment.",
            "What will happen in {city} in {year}?",
            "Which team will win the {year} World Cup?",
            "What did {co} announce this morning?",
            "How much is bitcoin worth right now?",
            "What will the price of {co} shares be in {year}?",
            "What is the temperature in {city} right now?",
            "What is happening in {city} today?",
            "How much is gold worth right now?",
            "Who will be president in {year}?",
            "What's the news today?",
            "Who won the game last night?",
            "What will {co}'s stock do tomorrow?",
            "What is the weather tomorrow in {city}?",
            "Tell me the live score right now.",
            "What will the price of {co} stock be next {when}?",
            "Who is going to win the election in {year}?",
            "What are the top headlines today?",
            "What is the current weather in {city}?",
            "What is the exchange rate right now?",
            "What will happen in the world in {year}?",
            "Who will win the World Cup in {year}?",
            "Which team won the game last night?",
            "What did {co} announce today?",
            "What is bitcoin worth today?",
            "How much will {co} shares be worth next {when}?",
            "What's the temperature in {city} today?",
            "What is happening in the news right now?",
            "What is the price of gold today?",
            "Who will be elected president in {year}?",
            "What's the live score of the game?",
            "Tell me the current exchange rate at this moment.",
        ),
        _pairs(
            ("co", "when", "year", "city"),
            "Apple|week|2040|Paris;Tesla|month|2077|Tokyo;Google|year|2090|Lagos;"
            "Amazon|Tuesday|2055|Lima;Nvidia|quarter|2101|Oslo;Microsoft|week|2066|Cairo",
        ),
        (
            "I don't have access to real-time or future information, so I can't tell you that.",
            "That depends on live or future events that I can't know.",
        ),
    ),
)
