"""The nodes check every value they will use before paying: wired values too, batch and frame
counts, and the paid-request cap, whose refusal gives the price and how to allow more."""

from __future__ import annotations

import pytest
import torch

from comfyui_flux2_flex.nodes.engine.caps import CAP_ENV_VAR
from comfyui_flux2_flex.nodes.engine.errors import InvalidRequestError, PaidRequestCapError
from comfyui_flux2_flex.nodes.engine.journal import TaskJournal
from comfyui_flux2_flex.nodes.engine.runner import RunHooks
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, run_settings
from fakes.bfl_server import FakeBfl


def settings(**changes) -> NodeSettings:
    return NodeSettings(**{**dict(provider="bfl", prompt="a fox", width=256, height=192, seed=42, steps=4), **changes})


@pytest.mark.parametrize("batch_size", [0, 20])
def test_a_wired_batch_size_out_of_range_is_refused_before_any_request(bfl_env: FakeBfl, batch_size: int) -> None:
    with pytest.raises(InvalidRequestError, match="batch_size = .* from 1 to 16"):
        run_settings(settings(batch_size=batch_size), RunHooks())
    assert bfl_env.all_requests() == []


def test_a_wired_value_out_of_range_is_refused_before_any_request(bfl_env: FakeBfl) -> None:
    with pytest.raises(InvalidRequestError, match="guidance = 12.0"):
        run_settings(settings(guidance=12.0), RunHooks())
    assert bfl_env.all_requests() == []


def test_an_edit_of_many_frames_over_the_cap_is_refused_with_its_price(bfl_env: FakeBfl) -> None:
    frames = torch.rand(300, 64, 64, 3)
    with pytest.raises(PaidRequestCapError) as refused:
        run_settings(settings(batch_size=16), RunHooks(), edit_image=frames, match_input_size=False)
    message = str(refused.value)
    assert "4800 paid requests" in message and "$" in message and CAP_ENV_VAR in message
    assert bfl_env.all_requests() == []


def test_the_cap_can_be_raised_deliberately(bfl_env: FakeBfl, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CAP_ENV_VAR, "2")
    with pytest.raises(PaidRequestCapError, match="over the limit of 2"):
        run_settings(settings(batch_size=3), RunHooks())
    monkeypatch.setenv(CAP_ENV_VAR, "3")
    result = run_settings(settings(batch_size=3), RunHooks())
    assert result.images.shape[0] == 3 and len(bfl_env.submits) == 3


def test_a_one_pixel_image_is_refused_before_paying(bfl_env: FakeBfl) -> None:
    with pytest.raises(InvalidRequestError, match="input image 1 = '1x1'.*at least 16 pixels"):
        run_settings(settings(), RunHooks(), edit_image=torch.rand(1, 1, 1, 3), match_input_size=False)
    assert bfl_env.all_requests() == []


def test_the_node_journals_its_paid_task(bfl_env: FakeBfl, tmp_path) -> None:
    journal = TaskJournal(tmp_path / "journal")
    first = run_settings(settings(), RunHooks(), journal=journal)
    [entry] = journal.entries()
    assert entry.state == "delivered" and entry.task_id in first.report
