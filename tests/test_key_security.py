"""Keys stay the user's: who may change them, several named keys per provider, redaction of
keys a provider echoes, and result downloads that follow redirects only where they should."""

from __future__ import annotations

import json
import logging
import stat

import pytest

from comfyui_flux2_flex.nodes.engine import errors
from comfyui_flux2_flex.nodes.engine.keys import (
    ApiKey, key_choice_note, read_stored_keys, resolve_api_key,
)
from comfyui_flux2_flex.nodes.engine.providers.bfl import BflProvider
from comfyui_flux2_flex.nodes.engine.redaction import REDACTED, install_log_redaction, redact, register_secret
from comfyui_flux2_flex.nodes.engine.request import FlexRequest
from comfyui_flux2_flex.nodes.engine.runner import RunHooks, RunSettings, generate, prepare
from comfyui_flux2_flex.nodes.engine.settings import configure
from comfyui_flux2_flex.nodes.engine.transport import download_result, redirect_allowed
from comfyui_flux2_flex.nodes.logic.key_store import KeyStore
from comfyui_flux2_flex.nodes.logic.node_runs import NodeSettings, run_settings
from comfyui_flux2_flex.nodes.logic.request_guard import REMOTE_WRITES_ENV, TRUSTED_HOSTS_ENV, key_route_refusal

from fakes.bfl_server import FakeBfl, render_result
from fakes.loopback import LoopbackServer, Response

NAMES = frozenset({"localhost", "studio-pc"})
PAGE = {"X-Flux2-Flex": "1", "Host": "192.168.1.20:8188", "Origin": "http://192.168.1.20:8188",
        "Sec-Fetch-Site": "same-origin"}


def refusal(method: str = "POST", remote: str = "127.0.0.1", writes: bool = True, **headers: str | None) -> str | None:
    sent = {**PAGE, **{name.replace("_", "-"): value for name, value in headers.items()}}
    return key_route_refusal(method, {k: v for k, v in sent.items() if v is not None}, remote, names=NAMES,
                             writes=writes)


# Who may read and change the stored keys


def test_the_settings_page_may_change_keys_whatever_address_comfyui_is_opened_by() -> None:
    assert refusal() is None
    assert refusal(Host="localhost:8188", Origin="http://localhost:8188") is None
    assert refusal(Host="[::1]:8188", Origin="http://[::1]:8188", remote="::1") is None
    assert refusal(Host="studio-pc", Origin="http://studio-pc", Sec_Fetch_Site=None) is None
    assert refusal("GET", writes=False, Origin=None, remote="192.168.1.7") is None


def test_a_cross_site_form_cannot_change_keys() -> None:
    # A plain HTML form can send neither the custom header nor a same-site Origin.
    assert "X-Flux2-Flex header is missing" in refusal(X_Flux2_Flex=None, Origin="https://evil.example",
                                                       Sec_Fetch_Site="cross-site")
    assert "cross-site" in refusal(Sec_Fetch_Site="cross-site")
    assert "Origin 'https://evil.example'" in refusal(Origin="https://evil.example", Sec_Fetch_Site=None)
    assert "Origin 'null'" in refusal(Origin="null", Sec_Fetch_Site=None)
    assert "Origin 'http://192.168.1.20:9999'" in refusal(Origin="http://192.168.1.20:9999")


def test_a_change_without_an_origin_is_refused() -> None:
    assert "must carry an Origin" in refusal(Origin=None, Sec_Fetch_Site=None)
    assert "must carry an Origin" in refusal("DELETE", Origin=None)


def test_a_rebound_host_name_is_refused_even_from_its_own_page() -> None:
    # DNS rebinding: the attacker's name now points at this machine, so Origin and Host agree.
    assert "Host 'attacker.example:8188' is not a name" in refusal(Host="attacker.example:8188",
                                                                   Origin="http://attacker.example:8188")
    assert "is not a name" in refusal("GET", writes=False, Host="attacker.example:8188", Origin=None)


def test_a_trusted_host_name_can_be_added(monkeypatch: pytest.MonkeyPatch) -> None:
    from comfyui_flux2_flex.nodes.logic.request_guard import machine_names

    monkeypatch.setenv(TRUSTED_HOSTS_ENV, "comfy.lan, Proxy.Example.")
    names = machine_names()
    assert {"comfy.lan", "proxy.example", "localhost"} <= names
    headers = {**PAGE, "Host": "comfy.lan", "Origin": "http://comfy.lan"}
    assert key_route_refusal("POST", headers, "127.0.0.1", names=names, writes=True) is None


def test_keys_change_only_from_this_machine_unless_the_user_opts_in(monkeypatch: pytest.MonkeyPatch) -> None:
    assert "only from this machine (the request came from 192.168.1.7)" in refusal(remote="192.168.1.7")
    assert refusal(remote="::ffff:127.0.0.1") is None
    assert refusal(writes=False, remote="192.168.1.7") is None, "listing names is allowed on the network"
    monkeypatch.setenv(REMOTE_WRITES_ENV, "1")
    assert refusal(remote="192.168.1.7") is None


# Named keys


def test_several_named_keys_per_provider_are_picked_by_name(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "keys.json", ("bfl", "fal"))
    store.save("bfl", "bfl-default-key-000")
    assert store.save("bfl", "bfl-client-key-111", "client") == "client"
    assert store.names() == {"bfl": ["client", "default"], "fal": []}
    stored = read_stored_keys(store.path)
    assert resolve_api_key("bfl", "BFL_API_KEY", name="client", environ={}, stored=stored).reveal() == "bfl-client-key-111"
    assert resolve_api_key("bfl", "BFL_API_KEY", environ={}, stored=stored).reveal() == "bfl-default-key-000"
    named_over_env = resolve_api_key("bfl", "BFL_API_KEY", name="client", environ={"BFL_API_KEY": "env-key-999"},
                                     stored=stored)
    assert named_over_env.reveal() == "bfl-client-key-111", "a name asked for explicitly wins over the environment"
    unknown = resolve_api_key("bfl", "BFL_API_KEY", name="team", environ={}, stored=stored)
    assert unknown.reveal() == "bfl-default-key-000"
    assert "key_name 'team'" in key_choice_note("bfl", "team", stored=stored)
    assert key_choice_note("bfl", "client", stored=stored) is None and key_choice_note("bfl", "", stored=stored) is None
    with pytest.raises(errors.InvalidRequestError, match="key_name = '../x'"):
        store.save("bfl", "bfl-other-key-222", "../x")
    with pytest.raises(errors.InvalidRequestError, match="8 to 512 characters"):
        store.save("bfl", "short")


def test_keys_stored_before_names_existed_are_migrated_as_default_keys(tmp_path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"fal": "fal-old-format-key"}))
    path.chmod(0o600)
    store = KeyStore(path, ("bfl", "fal"))
    assert store.names()["fal"] == ["default"], "the first format is read as it is"
    assert store.migrate() and not store.migrate()
    assert json.loads(path.read_text()) == {"version": 2, "keys": {"fal": {"default": "fal-old-format-key"}}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_workflow_naming_an_unknown_key_runs_on_the_default_key_and_says_so(fake_bfl: FakeBfl, tmp_path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    store = KeyStore(tmp_path / "keys.json", ("bfl",))
    store.save("bfl", "a-wrong-client-key", "client")
    monkeypatch.setenv("BFL_API_KEY", fake_bfl.api_key)
    monkeypatch.setenv("FLUX_FLEX_BFL_URL", fake_bfl.api_url)
    configure(stored_keys_file=store.path)
    try:
        settings = NodeSettings(provider="bfl", prompt="a fox", width=256, height=256, seed=5, key_name="personal")
        result = run_settings(settings, RunHooks())
        assert "key_name 'personal': no bfl key of that name is stored here" in result.report
        with pytest.raises(errors.AuthenticationError):
            run_settings(NodeSettings(provider="bfl", prompt="a fox", width=256, height=256, seed=6,
                                      key_name="client"), RunHooks())
    finally:
        configure()
    assert fake_bfl.submits[-1].headers["x-key"] == "a-wrong-client-key", "the named key was the one sent"


# Redaction


def test_a_key_echoed_by_the_provider_is_redacted_in_the_error_and_the_log(caplog) -> None:
    key = "bfl-echoed-key-4567890"
    fake = FakeBfl(api_key=key)
    with fake:
        provider = BflProvider(base_url=fake.api_url, api_key=ApiKey(key))
        fake.submit_script.append(Response.json({"detail": f"Invalid key {key} for this account"}, 401))
        install_log_redaction()
        with pytest.raises(errors.AuthenticationError) as caught:
            generate(prepare(FlexRequest(prompt="x", width=256, height=256, seed=1), provider), provider,
                     settings=RunSettings(submit_retry_seconds=5.0))
    message = str(caught.value)
    assert key not in message and f"Invalid key {REDACTED}" in message
    logging.getLogger("comfyui_flux2_flex").error("run failed: %s (raw %s)", caught.value, key)
    assert "run failed" in caplog.text and key not in caplog.text


def test_keys_in_log_lines_and_tracebacks_of_any_origin_are_redacted(caplog) -> None:
    key = "fal-stored-key-abcdefgh"
    register_secret(key)
    install_log_redaction(*logging.getLogger().handlers)  # as ComfyUI's adapter does with its root handlers
    try:
        raise RuntimeError(f"provider said {key}")
    except RuntimeError:
        logging.getLogger("some_other_library").exception("failed with %s", key)
    assert "provider said" in caplog.text and "failed with" in caplog.text and key not in caplog.text
    assert redact(f"x{key}y") == f"x{REDACTED}y"
    assert redact("short") == "short", "values too short to be keys are left alone"


def test_provider_text_kept_on_an_error_is_redacted_too() -> None:
    key = "cometapi-key-987654321"
    register_secret(key)
    error = errors.ModeratedError(f"refused {key}", stage="content", reasons=(f"flagged for {key}",), task_id="t1")
    assert key not in str(error) and key not in " ".join(error.reasons)


def test_result_urls_are_logged_without_their_query_string(fake_bfl: FakeBfl, bfl: BflProvider, caplog) -> None:
    caplog.set_level(logging.INFO)
    install_log_redaction()
    generate(prepare(FlexRequest(prompt="x", width=256, height=256, seed=2), bfl), bfl,
             settings=RunSettings(submit_retry_seconds=5.0))
    assert "/results/" in caplog.text, "httpx logged the download"
    assert "sig=secret-signature" not in caplog.text and "get_result?id" not in caplog.text


# Redirects of result downloads


def test_redirect_rules() -> None:
    assert redirect_allowed("https://delivery-eu1.bfl.ai/a?s=1", "https://delivery-us1.bfl.ai/b", ("bfl.ai",))
    assert redirect_allowed("https://x.bfl.ai/a", "https://bfl.ai/b", ("bfl.ai",))
    assert redirect_allowed("https://cdn.example/a", "https://cdn.example/b", ())
    assert not redirect_allowed("https://x.bfl.ai/a", "https://evil-bfl.ai/b", ("bfl.ai",))
    assert not redirect_allowed("https://x.bfl.ai/a", "https://bfl.ai.evil.example/b", ("bfl.ai",))
    assert not redirect_allowed("https://x.bfl.ai/a", "http://y.bfl.ai/b", ("bfl.ai",)), "never down to http"
    assert not redirect_allowed("https://x.bfl.ai/a", "https://169.254.169.254/latest", ("bfl.ai",))
    assert not redirect_allowed("https://x.bfl.ai/a", "file:///etc/passwd", ("bfl.ai",))
    assert not redirect_allowed("http://127.0.0.1:8000/a", "http://127.0.0.1:6379/b", ()), "another port"
    assert not redirect_allowed("https://x.bfl.ai/a", "https://y.bfl.ai:8443/b", ("bfl.ai",)), "not its default port"
    assert redirect_allowed("https://cdn.example/a", "https://cdn.example:443/b", ())


def test_a_download_follows_a_redirect_on_its_host_but_not_to_another_host() -> None:
    image = render_result(32, 32, 1, "png")
    elsewhere = LoopbackServer(lambda request: Response(200, b"not the image"))
    delivery = LoopbackServer(lambda request: {
        "/moved": Response(302, headers={"Location": "/final.png"}),
        "/final.png": Response(200, image, {"Content-Type": "image/png"}),
        "/away": Response(302, headers={"Location": elsewhere.url.replace("127.0.0.1", "localhost") + "/x.png"}),
    }[request.path])
    delivery.start(), elsewhere.start()
    try:
        assert download_result(delivery.url + "/moved?sig=1") == image
        with pytest.raises(errors.UnsafeUrlError, match="redirected to localhost:.*not followed") as caught:
            download_result(delivery.url + "/away?sig=1")
    finally:
        delivery.stop(), elsewhere.stop()
    assert "sig=1" not in str(caught.value)
    assert elsewhere.requests == [], "the foreign host was never contacted"

