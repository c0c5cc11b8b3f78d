"""`flux-flex` as a user runs it: estimate, dry run, generate, and one-line failures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from comfyui_flux2_flex.nodes.engine.cli import main

from fakes.bfl_server import FakeBfl, TaskPlan


def test_estimate_needs_no_key_and_prints_the_breakdown(capsys) -> None:
    assert main(["estimate", "--prompt", "fox", "--width", "1920", "--height", "1072"]) == 0
    out = capsys.readouterr().out
    assert "bfl: $0.100 (10 credits)" in out and "billed as 2 MP" in out


def test_dry_run_prints_the_body_without_images_and_sends_nothing(bfl_env: FakeBfl, tmp_path: Path, capsys) -> None:
    ref = tmp_path / "ref.png"
    Image.new("RGB", (96, 64), "red").save(ref)
    code = main(["generate", "--prompt", "fox", "--reference", str(ref), "--seed", "3", "--no-prompt-upsampling",
                 "--upload-format", "jpeg", "--out", str(tmp_path / "o.png"), "--dry-run"])
    out = capsys.readouterr().out
    assert code == 0
    body = json.loads(out[out.index("{"): out.index("}\n") + 1])
    assert body["input_image"] == "<jpeg image 96x64, omitted>"
    assert body["seed"] == 3 and body["prompt_upsampling"] is False
    assert "$0.100" in out
    assert out.startswith(f"POST {bfl_env.api_url}/v1/flux-2-flex (BFL)\n")  # the URL it would post to
    assert bfl_env.all_requests() == [] and not (tmp_path / "o.png").exists()
    assert bfl_env.api_key not in out


def test_generate_without_a_key_falls_back_to_a_dry_run(tmp_path: Path, capsys) -> None:
    assert main(["generate", "--prompt", "fox", "--out", str(tmp_path / "o.png")]) == 0
    captured = capsys.readouterr()
    assert "set the environment variable BFL_API_KEY" in captured.err
    assert '"prompt": "fox"' in captured.out and not (tmp_path / "o.png").exists()


def test_generate_saves_the_image_and_reports_the_cost(bfl_env: FakeBfl, tmp_path: Path, capsys) -> None:
    out_file = tmp_path / "nested" / "fox.png"
    assert main(["generate", "--prompt", "fox", "--width", "320", "--height", "240", "--seed", "9",
                 "--out", str(out_file)]) == 0
    with Image.open(out_file) as saved:
        assert saved.size == (320, 240) and saved.format == "PNG"
    out = capsys.readouterr().out
    assert "seed 9" in out and "bfl reported 5 credits" in out
    assert bfl_env.api_key not in out


def test_failures_exit_non_zero_with_one_line(bfl_env: FakeBfl, tmp_path: Path, capsys) -> None:
    assert main(["generate", "--prompt", "fox", "--steps", "80", "--out", str(tmp_path / "o.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "flux-flex: error: steps = 80 is not allowed: from 1 to 50."
    assert bfl_env.all_requests() == []


def test_the_installed_console_script_runs(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("flux-flex")
    completed = subprocess.run([str(script), "estimate", "--prompt", "fox"], capture_output=True, text=True,
                               timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "5 credits" in completed.stdout


def test_the_command_line_never_imports_torch(bfl_env: FakeBfl, tmp_path: Path) -> None:
    """`pip install .` has no torch: estimate, dry run and generate must not need it."""
    # The process polls on BFL's real timing (conftest's pace does not reach it): one poll that
    # finds the task ready, since only the imports matter here.
    bfl_env.plans.append(TaskPlan(statuses=["Ready"]))
    program = """if True:
        import sys
        from comfyui_flux2_flex.nodes.engine.cli import main
        out = sys.argv[1]
        assert main(["estimate", "--prompt", "fox"]) == 0
        assert main(["generate", "--prompt", "fox", "--out", out, "--dry-run"]) == 0
        assert main(["generate", "--prompt", "fox", "--width", "64", "--height", "64", "--out", out]) == 0
        print("torch imported:", "torch" in sys.modules)
    """
    completed = subprocess.run([sys.executable, "-c", program, str(tmp_path / "o.png")], capture_output=True,
                               text=True, timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip().endswith("torch imported: False")
    assert (tmp_path / "o.png").is_file() and len(bfl_env.submits) == 1


# What a command answered from the result cache must not load: it validates, prices and copies the
# stored image, so the arrays, the HTTP layer, the runner, the local backend, the other providers,
# what only a submit or a poll uses, and Pillow's other format plugins would only cost it time
# (issue 23: within 1.5 times a process that just copies the PNG).
# httpx is in sys.modules from the start as lazy_httpx's stand-in: its submodules show it ran.
NOT_ON_A_CACHE_HIT = ("numpy", "httpx._client", "torch", "nodes.engine.runner", "nodes.engine.images",
                      "nodes.engine.transport", "nodes.engine.slots", "nodes.engine.local.backend",
                      "nodes.engine.local.models", "nodes.engine.local.pipeline_cache",
                      "nodes.engine.providers.replicate", "nodes.engine.providers.fal",
                      "nodes.engine.providers.openrouter", "nodes.engine.providers.openai_gateway",
                      "nodes.engine.providers.upload_body", "nodes.engine.providers.tasks", "nodes.engine.polling",
                      "nodes.engine.request_lock",
                      "concurrent.futures", "tempfile", "shutil", "uuid", "PIL.JpegImagePlugin", "PIL.GifImagePlugin")


def test_a_cache_hit_loads_nothing_it_does_not_use(bfl_env: FakeBfl, tmp_path: Path) -> None:
    command = ["generate", "--prompt", "fox", "--width", "64", "--height", "64", "--seed", "3",
               "--out", str(tmp_path / "first.png"), "--cache-dir", str(tmp_path / "cache")]
    assert main(command) == 0 and len(bfl_env.submits) == 1  # paid once, stored
    program = """if True:
        import sys
        from comfyui_flux2_flex.nodes.engine.cli import main
        assert main(sys.argv[1:]) == 0
        print("loaded:", sorted(name.removeprefix("comfyui_flux2_flex.") for name in sys.modules))
    """
    hit = [*command[:-3], str(tmp_path / "hit.png"), *command[-2:]]
    completed = subprocess.run([sys.executable, "-c", program, *hit], capture_output=True, text=True,
                               timeout=120, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "from the result cache" in completed.stdout and len(bfl_env.submits) == 1
    loaded = set(completed.stdout.rpartition("loaded: ")[2].strip(" []\n").replace("'", "").split(", "))
    assert "nodes.engine.providers.bfl" in loaded  # the list is the real one
    assert sorted(loaded & set(NOT_ON_A_CACHE_HIT)) == []
    assert (tmp_path / "hit.png").read_bytes() == (tmp_path / "first.png").read_bytes(), "the stored file, as paid"
    assert main([*command[:-3], str(tmp_path / "hit.jpg"), *command[-2:]]) == 0 and len(bfl_env.submits) == 1
    with Image.open(tmp_path / "first.png") as first, Image.open(tmp_path / "hit.jpg") as converted:
        assert converted.format == "JPEG" and converted.size == first.size
