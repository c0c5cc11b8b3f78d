"""What the nodes say, without ComfyUI: the status while a run goes on and after it ended early,
a refused setting once at the input it names, and the report as a receipt."""

from __future__ import annotations

import numpy as np

from comfyui_flux2_flex.nodes.engine.pricing import CostEstimate
from comfyui_flux2_flex.nodes.engine.runner import GenerationResult
from comfyui_flux2_flex.nodes.logic.node_words import Words
from comfyui_flux2_flex.nodes.logic.receipt import receipt
from comfyui_flux2_flex.nodes.logic.run_status import RunStatus
from comfyui_flux2_flex.nodes.logic.validation_errors import fold_prompt_answer


def test_the_status_names_progress_and_the_paid_task_and_how_to_collect_it() -> None:
    status = RunStatus()
    status.progress(0.0, "submitting")
    assert status.text().startswith("submitting · 0 s") and "paid" not in status.text()
    status.submitted("task-1")
    status.progress(0.42, "Pending")
    assert status.text() == "Pending · 42% · 0 s\npaid task: task-1"
    cancelled = status.ended_early(cancelled=True)
    assert cancelled.startswith("Cancelled after 0 s. Task task-1 was paid:") and "Run again" in cancelled
    assert "Recover paid task" in cancelled
    assert RunStatus().ended_early(cancelled=True).endswith("Nothing was paid.")


def validation_error(name: str, message: str) -> dict:
    return {"type": "custom_validation_failed", "message": "Custom validation failed for node",
            "details": f"{name} - {message}", "extra_info": {"input_name": name}}


def test_a_refused_setting_is_one_error_at_the_input_it_names() -> None:
    message = "width = 5000 is not allowed: 64 to 2048 in steps of 16."
    names = ["aspect_ratio", "provider", "prompt", "width", "height", "key_name"]
    errors = [validation_error(name, message) for name in names]
    other = {"type": "value_not_in_list", "message": "Value not in list", "details": "x", "extra_info": {}}
    answer = {"error": {"details": "\n".join(f"Custom validation failed for node: {e['details']}" for e in errors)},
              "node_errors": {"5": {"class_type": "FluxFlexGenerate", "errors": [*errors, other]},
                              "6": {"class_type": "KSampler", "errors": errors[:2]}}}
    folded = fold_prompt_answer(answer, {"FluxFlexGenerate"})
    ours = folded["node_errors"]["5"]["errors"]
    assert ours == [{**validation_error("width", message)}, other], "once, at width, other errors untouched"
    assert len(folded["node_errors"]["6"]["errors"]) == 2, "other nodes' errors are ComfyUI's business"
    assert folded["error"]["details"].count("width = 5000") == 1 + 2, "the summary: once for ours, as is for others"


def test_a_message_naming_no_input_belongs_to_the_provider() -> None:
    message = "No API key for bfl: set the environment variable BFL_API_KEY or store it in ComfyUI's settings."
    answer = {"node_errors": {"1": {"class_type": "FluxFlexEdit",
                                    "errors": [validation_error(n, message) for n in ("image", "provider", "seed")]}}}
    (error,) = fold_prompt_answer(answer, {"FluxFlexEdit"})["node_errors"]["1"]["errors"]
    assert error["extra_info"]["input_name"] == "provider" and error["details"] == f"provider - {message}"


def result(**changes) -> GenerationResult:
    values = dict(image=np.zeros((1248, 832, 3), np.uint8), provider="bfl", task_id="t-9", seed=42,
                  estimate=CostEstimate("bfl", 5, 0.05, ("source: somewhere",)), reported_cost=5.0, input_mp=0,
                  output_mp=0.99, seconds=1.0, notes=("a note",))
    return GenerationResult(**{**values, **changes})


def test_the_report_is_a_receipt() -> None:
    assert receipt(result()) == "$0.050 · 832x1248 · seed 42\nbfl reported 5 credits\nbfl task t-9\na note"
    cached = receipt(result(from_cache=True))
    assert cached.startswith("$0 · from the result cache") and "$0.050 the first time" in cached
    assert "reported" not in cached
    unknown = receipt(result(provider="replicate", estimate=CostEstimate("replicate", None, None, ()),
                             reported_cost=None))
    assert unknown.startswith("price unknown: see your Replicate dashboard · 832x1248")
    for text in (receipt(result()), cached, unknown):
        assert "source" not in text and "megapixels" not in text


def test_the_receipt_and_status_are_in_the_language_of_the_tab_that_queued_the_run() -> None:
    """Issue 20: the after-run report's labels and the status text, in Japanese; values stay as they are."""
    japanese = Words("ja")
    assert receipt(result(), japanese).splitlines()[:3] == [
        "$0.050 · 832x1248 · シード 42", "bfl の報告：5 credits", "bfl のタスク t-9"]
    status = RunStatus(japanese)
    assert status.text() == "待機中 · 0 秒"
    status.submitted("task-1")
    cancelled = status.ended_early(cancelled=True)
    assert cancelled.startswith("0 秒後にキャンセルしました。タスク task-1 は支払い済みです") and "Recover paid task" in cancelled
    assert Words("xx")("status.queued") == "queued", "a language the pack does not ship: English"


def test_a_task_in_a_list_shows_where_its_prompt_was_cut() -> None:
    from comfyui_flux2_flex.nodes.engine.request import FlexRequest
    from comfyui_flux2_flex.nodes.engine.runner import describe_request

    long = FlexRequest(prompt="A vintage travel poster of a lighthouse on a rocky coast at dusk, bold lettering",
                       width=832, height=1248, seed=7)
    assert describe_request(long) == "832x1248, seed 7: A vintage travel poster of a lighthouse on a rocky coast at…"
    assert describe_request(FlexRequest(prompt="a fox", width=64, height=64, seed=1)).endswith(": a fox")
