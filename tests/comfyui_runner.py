"""A real ComfyUI server for integration tests, with this pack linked in and the loopback BFL.

Needs a ComfyUI checkout (COMFYUI_PATH) and the Python that runs it (COMFYUI_PYTHON); tests that
use it are skipped with that reason when either is absent. COMFYUI_FRONTEND_ROOT optionally
points at another frontend build (the `static` folder of a comfyui-frontend-package), so the same
tests run against the frontend a ComfyUI release ships and against the newest one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.bfl_server import FakeBfl

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON")
COMFYUI_FRONTEND_ROOT = os.environ.get("COMFYUI_FRONTEND_ROOT")
REPO_ROOT = Path(__file__).resolve().parent.parent
needs_comfyui = pytest.mark.skipif(
    not (COMFYUI_PATH and COMFYUI_PYTHON),
    reason="set COMFYUI_PATH (a ComfyUI checkout) and COMFYUI_PYTHON (its Python) to run ComfyUI integration tests",
)
STARTUP_SECONDS = 180
LOCAL_EXAMPLE_MODEL = "FLUX.2-klein-4B"  # the folder name the local example workflow picks
RUN_SECONDS = 120
NATIVE_RUN_SECONDS = 1500  # a hang guard: the tiny klein's text encoder is full-size arithmetic (about a minute a prompt on
# two idle CPU cores), and a 1 MP edit adds the FLUX.2 VAE's full-width encoder; a busy machine takes several times that
NO_NATIVE_FLUX2 = 3  # tiny_comfy_flux2.py's exit status on a ComfyUI from before FLUX.2


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ComfyUI:
    """A ComfyUI server process with this pack linked in through extra_model_paths."""

    def __init__(self, root: Path, bfl: FakeBfl, *, pack_copies: int = 1, listen: str = "127.0.0.1",
                 extra_args: tuple[str, ...] = (), key_in_environment: bool = True,
                 extra_env: dict[str, str] | None = None) -> None:
        """`listen` is the address ComfyUI binds; the tests always connect to 127.0.0.1. `extra_env`
        adds environment variables (another provider's key and stand-in URL)."""
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "comfyui.log"
        for name in ("custom_nodes", "input", "output", "user"):
            (root / name).mkdir(exist_ok=True)  # a restart reuses the folders, the user folder's journal too
        for copy in range(pack_copies):  # a second copy is what a manual clone beside a Manager install gives
            link = root / "custom_nodes" / ("comfyui_flux2_flex" + (f"_copy{copy}" if copy else ""))
            if not link.exists():
                link.symlink_to(REPO_ROOT, target_is_directory=True)
        config = root / "extra_model_paths.yaml"
        config.write_text(f"flux2_flex_test:\n  base_path: {root}\n  custom_nodes: custom_nodes/\n"
                          "  diffusers: models/diffusers/\n  diffusion_models: models/diffusion_models/\n"
                          "  text_encoders: models/text_encoders/\n  vae: models/vae/\n")
        env = {**os.environ, "FLUX_FLEX_BFL_URL": bfl.api_url, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
        if key_in_environment:
            env["BFL_API_KEY"] = bfl.api_key
        command = [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", listen, "--port", str(self.port), *extra_args,
                   "--disable-auto-launch", "--input-directory", str(root / "input"),
                   "--output-directory", str(root / "output"), "--user-directory", str(root / "user"),
                   "--extra-model-paths-config", str(config)]
        if COMFYUI_FRONTEND_ROOT:
            command += ["--front-end-root", COMFYUI_FRONTEND_ROOT]
        self.log = self.log_path.open("a")  # a restart in the same folder keeps the earlier run's log
        self.process = subprocess.Popen(command, cwd=COMFYUI_PATH, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited: {self.log_path.read_text()[-3000:]}")
            try:
                if self.client.get("/system_stats").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise RuntimeError("ComfyUI did not start in time")

    def kill(self) -> None:
        """End it as a crash or a power cut would: no handler runs."""
        self.process.kill()
        self.process.wait()
        self.client.close()
        self.log.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.client.close()
        self.log.close()

    def key_headers(self, **extra: str) -> dict[str, str]:
        """What the pack's settings page sends to its key routes from this ComfyUI's own page."""
        return {"X-Flux2-Flex": "1", "Origin": self.url, **extra}

    def queue(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None, *,
              headers: dict[str, str] | None = None, extra_data: dict[str, Any] | None = None) -> httpx.Response:
        body: dict[str, Any] = {"prompt": prompt, "client_id": str(uuid.uuid4()), "extra_data": dict(extra_data or {})}
        if workflow is not None:
            body["extra_data"]["extra_pnginfo"] = {"workflow": workflow}
        return self.client.post("/prompt", json=body, headers=headers)

    def wait_for(self, prompt_id: str, seconds: float = RUN_SECONDS) -> dict[str, Any]:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            history = self.client.get(f"/history/{prompt_id}").json()
            if prompt_id in history and history[prompt_id].get("status", {}).get("completed") is not None:
                entry = history[prompt_id]
                if entry["status"]["status_str"] in ("success", "error"):
                    return entry
            time.sleep(0.3)
        raise TimeoutError(f"prompt {prompt_id} did not finish")

    def run(self, prompt: dict[str, Any], workflow: dict[str, Any] | None = None,
            seconds: float = RUN_SECONDS) -> dict[str, Any]:
        response = self.queue(prompt, workflow)
        assert response.status_code == 200, response.text
        return self.wait_for(response.json()["prompt_id"], seconds)


def prepare_local_models(root: Path) -> bool:
    """Put a tiny random-weight FLUX.2 klein, under the name the local example uses, into the test
    ComfyUI's models/diffusers, where ComfyUI's Python can run it (it needs diffusers)."""
    probe = subprocess.run([COMFYUI_PYTHON, "-c", "import diffusers"], capture_output=True)
    if probe.returncode != 0:
        return False
    from tiny_flux2_pipelines import build_tiny_flux2_klein

    build_tiny_flux2_klein(root / "models" / "diffusers" / LOCAL_EXAMPLE_MODEL, distilled=True)
    return True


def prepare_native_models(root: Path) -> bool:
    """Put a tiny random-weight FLUX.2 klein, under ComfyUI's standard klein file names, where its
    loaders look; False where this ComfyUI has no FLUX.2 (nothing is written then)."""
    build = subprocess.run([COMFYUI_PYTHON, str(REPO_ROOT / "tests" / "tiny_comfy_flux2.py"), str(root / "models")],
                           cwd=COMFYUI_PATH, capture_output=True, text=True)
    if build.returncode == NO_NATIVE_FLUX2:
        return False
    assert build.returncode == 0, build.stderr[-3000:]
    return True


@pytest.fixture(scope="module")
def comfy_bfl() -> Iterator[FakeBfl]:
    with FakeBfl() as server:
        yield server


@contextlib.contextmanager
def running_comfyui(root: Path, bfl: FakeBfl, **options: Any) -> Iterator[ComfyUI]:
    """A started ComfyUI (options as for ComfyUI), stopped on leaving."""
    server = ComfyUI(root, bfl, **options)
    try:
        server.wait_until_up()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def comfy(comfy_bfl: FakeBfl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComfyUI]:
    root = tmp_path_factory.mktemp("comfyui")
    prepare_local_models(root)
    prepare_native_models(root)
    with running_comfyui(root, comfy_bfl) as server:
        yield server


@pytest.fixture(scope="module")
def object_info(comfy: ComfyUI) -> dict[str, Any]:
    return comfy.client.get("/object_info").json()
