"""`rcs model register`: manifests for models with other refusal-token layouts, checked first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli import main
from core.categories import CATEGORIES, MANIFEST_FILENAME, RefusalManifest
from tests.refusal_models import PAPER_TOKENS, SINGLE_TOKENS, build_random_model
from workers.engine.batch import Engine
from workers.engine.model import load_model
from workers.engine.types import GenerationRequest, RowPolicy, SamplingParams

NO_RULE = RowPolicy("bias", (0.0,) * len(CATEGORIES))  # the model's own decision


@pytest.fixture(scope="module")
def paper_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_random_model(tmp_path_factory.mktemp("paper") / "model", PAPER_TOKENS)


@pytest.fixture
def fresh_paper_model(paper_model: Path) -> Path:
    (paper_model / MANIFEST_FILENAME).unlink(missing_ok=True)
    return paper_model


def _register(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_:
        main(["model", "register", *argv])
    return int(exit_.value.code or 0)


def test_paper_layout_is_registered_and_loads_in_the_engine(fresh_paper_model: Path) -> None:
    assert _register([str(fresh_paper_model), "--layout", "paper"]) == 0
    data = json.loads((fresh_paper_model / MANIFEST_FILENAME).read_text())
    assert data["categories"]["safety"]["token"] == " [Requests with safety concerns]"
    assert data["respond"]["token"] == " [respond]"
    lm = load_model(fresh_paper_model, device="cpu", dtype="float32")
    assert lm.manifest.served == CATEGORIES
    assert lm.tokenizer.convert_ids_to_tokens(lm.manifest.respond_id) == " [respond]"
    assert lm.manifest.respond_in_context and "respond_in_context" not in data


def test_a_head_on_an_unchanged_model_is_registered_outside_the_context(
    fresh_paper_model: Path,
) -> None:
    argv = [str(fresh_paper_model), "--layout", "paper", "--respond-outside-context"]
    assert _register(argv) == 0
    data = json.loads((fresh_paper_model / MANIFEST_FILENAME).read_text())
    assert data["respond_in_context"] is False
    assert not load_model(
        fresh_paper_model, device="cpu", dtype="float32"
    ).manifest.respond_in_context


def test_single_refusal_token_is_served_as_one_category(tmp_path: Path) -> None:
    model = build_random_model(tmp_path / "single", SINGLE_TOKENS)
    argv = [str(model), "--token", "safety=[refuse]", "--respond-token", "[respond]"]
    assert _register(argv) == 0
    manifest = RefusalManifest.from_json(json.loads((model / MANIFEST_FILENAME).read_text()))
    assert manifest.served == ("safety",)
    assert manifest.category_tokens.count(None) == len(CATEGORIES) - 1
    lm = load_model(model, device="cpu", dtype="float32")
    # Categories with no token point at the virtual column one past the logits.
    assert lm.refusal_ids.tolist().count(lm.vocab_size) == len(CATEGORIES) - 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--layout", "paper", "--token", "safety= [no such token here]"],
            "safety: ' [no such token here]' is not a single token",
        ),
        (["--token", "safety=[refuse]"], "no respond token"),
        (["--respond-token", " [respond]"], "no category token"),
        (
            ["--token", "safety= [respond]", "--respond-token", " [respond]"],
            "duplicate token ids",
        ),
    ],
)
def test_a_bad_mapping_is_one_clear_line_and_exit_2(
    fresh_paper_model: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _register([str(fresh_paper_model), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rcs model register: error: {message}"), err
    assert "\n" not in err
    assert not (fresh_paper_model / MANIFEST_FILENAME).exists()


def test_an_unknown_category_flag_is_a_usage_error(
    fresh_paper_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _register([str(fresh_paper_model), "--token", "rudeness=[x]"]) == 2
    assert "unknown category 'rudeness'" in capsys.readouterr().err


def test_an_existing_manifest_is_kept_without_force(
    fresh_paper_model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _register([str(fresh_paper_model), "--layout", "paper"]) == 0
    assert _register([str(fresh_paper_model), "--layout", "paper"]) == 2
    assert "use --force" in capsys.readouterr().err
    assert _register([str(fresh_paper_model), "--layout", "paper", "--force"]) == 0


def test_a_directory_without_a_model_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _register([str(tmp_path), "--layout", "paper"]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_a_decision_suffix_is_registered_checked_and_served(tmp_path: Path) -> None:
    model = build_random_model(tmp_path / "suffixed", (*PAPER_TOKENS, "[query1]"))
    argv = [str(model), "--layout", "paper", "--respond-outside-context"]
    assert _register([*argv, "--decision-token", "two tokens"]) == 2
    assert not (model / MANIFEST_FILENAME).exists()
    assert _register([*argv, "--decision-token", "[query1]"]) == 0
    data = json.loads((model / MANIFEST_FILENAME).read_text())
    (entry,) = data["decision_suffix"]
    assert entry["token"] == "[query1]"
    lm = load_model(model, device="cpu", dtype="float32")
    assert lm.manifest.decision_ids == (entry["id"],)
    assert entry["id"] in lm.answer_masked_ids
    greedy = SamplingParams(temperature=0.0, max_new_tokens=4)
    (result,), _ = Engine(lm).generate([GenerationRequest("hello there", NO_RULE, greedy)])
    assert result.first_token_id in lm.manifest.all_ids


def test_banned_openers_are_registered_and_loaded(fresh_paper_model: Path) -> None:
    argv = [str(fresh_paper_model), "--layout", "paper"]
    assert _register([*argv, "--ban-respond-opener", "  "]) == 2
    assert not (fresh_paper_model / MANIFEST_FILENAME).exists()
    openers = ["--ban-respond-opener", "I'm sorry", "--ban-respond-opener", "As an AI"]
    assert _register([*argv, *openers]) == 0
    data = json.loads((fresh_paper_model / MANIFEST_FILENAME).read_text())
    assert data["respond_banned_openers"] == ["I'm sorry", "As an AI"]
    lm = load_model(fresh_paper_model, device="cpu", dtype="float32")
    assert lm.opener_ban is not None
    sorry = lm.tokenizer.encode("I'm sorry", add_special_tokens=False)
    assert lm.opener_ban.banned(sorry[:-1]) == [sorry[-1]]
