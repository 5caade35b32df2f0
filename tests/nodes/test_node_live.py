import pytest
import torch

import comfy_stubs
from conftest import SAMPLING, audio_dict
from nodes.encode import RESTSpeechEncoder
from nodes.live import LIVE, RESTLiveSampler
from nodes.sessions import SessionClosed, SessionKey
from nodes.sampler import RESTStreamingSampler


@pytest.fixture(autouse=True)
def no_open_sessions():
    yield
    for key in list(LIVE.sessions) + list(LIVE.closed):
        LIVE.forget(key)


def push(model, reference, piece, rate, session="s", end=False, restart=False, **options):
    return RESTLiveSampler().push(model, reference, audio_dict(piece, rate), session, end, **(SAMPLING | options),
                                  restart=restart, unique_id="9")


def load_again(dtype="auto"):
    """The tiny checkpoint loaded once more: a new REST_MODEL, as when another prompt made ComfyUI run the loader."""
    from nodes.model import DEFAULT_WHISPER, RESTModelLoader

    return RESTModelLoader().load("tiny.safetensors", DEFAULT_WHISPER, "auto", dtype)[0]


def whole_clip_frames(model, reference, audio, rate, **options):
    speech, _ = RESTSpeechEncoder().encode(model, audio_dict(audio, rate))
    latent, = RESTStreamingSampler().sample(model, reference, speech, **(SAMPLING | options), live_player=False)
    return latent["rest_frames"]


def pieces_of(audio, cuts):
    bounds = [0, *cuts, audio.shape[1]]
    return [audio[:, a:b] for a, b in zip(bounds, bounds[1:])]


def test_pieces_across_prompts_make_the_whole_clips_video(comfy, rest_model, rest_reference):
    torch.manual_seed(5)
    audio = torch.randn(2, 60_000) * 0.1  # 48 kHz stereo, 1.25 s
    pieces = pieces_of(audio, [7_000, 56_000, 57_000])
    got, reports = [], []
    for i, piece in enumerate(pieces):
        out = push(rest_model, rest_reference, piece, 48_000, end=i == len(pieces) - 1)
        got.append(out["result"][0])
        reports.append(out["ui"]["rest_live"][0])
    # a piece that completes no chunk blocks what its image output feeds, rather than handing it an empty batch
    assert [type(g).__name__ for g in got] == ["ExecutionBlocker", "Tensor", "ExecutionBlocker", "Tensor"]
    assert got[0].message is None  # silently: nothing failed
    made = [g for g in got if isinstance(g, torch.Tensor)]
    assert torch.equal(torch.cat(made), whole_clip_frames(rest_model, rest_reference, audio, 48_000))
    assert [r["frames"] for r in reports] == [0, 24, 0, 7]  # a chunk waits for its 0.96 s + 0.16 s lookahead
    assert reports[-1]["finished"] and reports[-1]["frames_so_far"] == 31
    assert SessionKey("client-1", "s") not in LIVE  # end_of_stream closed it


def test_every_new_chunk_reaches_the_player_of_the_live_node(comfy, rest_model, rest_reference):
    push(rest_model, rest_reference, torch.randn(1, 20_000) * 0.1, 16_000)
    push(rest_model, rest_reference, torch.randn(1, 20_000) * 0.1, 16_000, end=True)
    events = [data for name, data, _ in comfy.events if name == "rest.chunk"]
    assert [e["index"] for e in events] == [0, 1, 2] and {e["node"] for e in events} == {"9"}
    assert len({e["stream"] for e in events}) == 1 and [e["final"] for e in events] == [False, False, True]
    assert [len(e["frames"]) for e in events] == [24, 24, 15]  # 2.5 s: 63 frames
    assert [e["total_frames"] for e in events] == [None, 63, 63]  # known once the audio has ended


def test_sessions_are_isolated_from_each_other(comfy, rest_model, rest_reference):
    torch.manual_seed(6)
    a, b = torch.randn(1, 40_000) * 0.1, torch.randn(1, 40_000) * 0.1
    got = {"a": [], "b": []}
    for i, (pa, pb) in enumerate(zip(pieces_of(a, [25_000]), pieces_of(b, [25_000]))):
        got["a"].append(push(rest_model, rest_reference, pa, 16_000, session="a", end=i == 1)["result"][0])
        got["b"].append(push(rest_model, rest_reference, pb, 16_000, session="b", end=i == 1)["result"][0])
    assert torch.equal(torch.cat(got["a"]), whole_clip_frames(rest_model, rest_reference, a, 16_000))
    assert torch.equal(torch.cat(got["b"]), whole_clip_frames(rest_model, rest_reference, b, 16_000))


def test_changing_a_setting_mid_session_is_refused_and_closes_the_session(comfy, rest_model, rest_reference):
    audio = torch.randn(1, 40_000) * 0.1
    push(rest_model, rest_reference, audio[:, :20_000], 16_000)
    with pytest.raises(ValueError, match="started with another seed"):
        push(rest_model, rest_reference, audio[:, 20_000:], 16_000, seed=1, end=True)
    with pytest.raises(SessionClosed, match="a piece failed .*another seed"):
        push(rest_model, rest_reference, audio[:, 20_000:], 16_000, end=True)


def test_a_cancelled_live_prompt_closes_its_session_and_its_id_says_so(comfy, rest_model, rest_reference):
    push(rest_model, rest_reference, torch.randn(1, 10_000) * 0.1, 16_000)
    comfy.interrupt_after = 1
    with pytest.raises(comfy_stubs.InterruptProcessingException):
        push(rest_model, rest_reference, torch.randn(1, 30_000) * 0.1, 16_000)
    assert "s" not in LIVE
    assert comfy.empty_cache_calls == 2
    with pytest.raises(SessionClosed, match="'s' was closed: a piece was cancelled"):
        push(rest_model, rest_reference, torch.randn(1, 30_000) * 0.1, 16_000)
    out = push(rest_model, rest_reference, torch.randn(1, 30_000) * 0.1, 16_000, restart=True)  # asked for
    assert out["ui"]["rest_live"][0]["chunks"] == [0]


def as_client(client_id):
    """The prompts that follow come from another client (ComfyUI sets this for each prompt it runs)."""
    from server import PromptServer

    PromptServer.instance.client_id = client_id


@pytest.fixture
def clients():
    yield
    as_client("client-1")


def test_two_clients_with_the_same_session_id_get_two_sessions_neither_can_touch(comfy, rest_model, rest_reference,
                                                                                 clients):
    torch.manual_seed(7)
    a, b = torch.randn(1, 40_000) * 0.1, torch.randn(1, 40_000) * 0.1
    got = {"a": [], "b": []}
    as_client("client-a")
    got["a"].append(push(rest_model, rest_reference, a[:, :25_000], 16_000, session="live")["result"][0])
    as_client("client-b")
    got["b"].append(push(rest_model, rest_reference, b[:, :25_000], 16_000, session="live")["result"][0])
    with pytest.raises(ValueError, match="already open"):  # b's own session, not a's
        LIVE.check_can_open(SessionKey("client-b", "live"))
    # b restarts and ends "live": its own session only
    push(rest_model, rest_reference, b, 16_000, session="live", restart=True, end=True)
    assert SessionKey("client-a", "live") in LIVE and SessionKey("client-b", "live") not in LIVE
    as_client("client-a")
    got["a"].append(push(rest_model, rest_reference, a[:, 25_000:], 16_000, session="live", end=True)["result"][0])
    assert torch.equal(torch.cat(got["a"]), whole_clip_frames(rest_model, rest_reference, a, 16_000))


def test_a_piece_without_a_client_id_is_refused(comfy, rest_model, rest_reference, clients):
    as_client(None)
    with pytest.raises(ValueError, match="live mode needs the client_id your prompts are queued with"):
        push(rest_model, rest_reference, torch.randn(1, 100), 16_000)
    assert not LIVE.sessions


def test_a_bad_piece_closes_its_session(comfy, rest_model, rest_reference):
    push(rest_model, rest_reference, torch.randn(1, 10_000) * 0.1, 16_000)
    with pytest.raises(ValueError, match="NaN or Inf"):
        push(rest_model, rest_reference, torch.full((1, 100), float("nan")), 16_000)
    key = SessionKey("client-1", "s")
    assert key not in LIVE and "NaN or Inf" in LIVE.closed[key]


def test_a_typed_session_id_is_checked_when_the_prompt_is_queued():
    refusal = RESTLiveSampler.VALIDATE_INPUTS(session_id="x" * 1_000_000)
    assert isinstance(refusal, str) and "1000000 characters long" in refusal and len(refusal) < 200
    assert "is empty" in RESTLiveSampler.VALIDATE_INPUTS(session_id="  ")
    assert RESTLiveSampler.VALIDATE_INPUTS(session_id="live") is True
    assert RESTLiveSampler.VALIDATE_INPUTS(session_id=None) is True  # a linked id: checked when the piece runs


def test_a_refusal_before_any_stream_leaves_nothing_behind(comfy, rest_model, rest_reference):
    with pytest.raises(ValueError, match="session_id is empty"):
        push(rest_model, rest_reference, torch.randn(1, 100), 16_000, session="  ")
    with pytest.raises(ValueError, match=r"session_id is 1000000 characters long \('xxxx") as refused:
        push(rest_model, rest_reference, torch.randn(1, 100), 16_000, session="x" * 1_000_000)
    assert len(str(refused.value)) < 200  # the id is not echoed whole
    with pytest.raises(ValueError, match="NaN or Inf"):  # a first piece: no stream was started
        push(rest_model, rest_reference, torch.full((1, 100), float("nan")), 16_000)
    with pytest.raises(ValueError, match="cfg: expected a finite number, got nan"):
        push(rest_model, rest_reference, torch.randn(1, 100), 16_000, cfg=float("nan"))
    assert not LIVE.sessions and not LIVE.closed


def test_restart_on_an_open_session_begins_a_new_stream_from_frame_zero(comfy, rest_model, rest_reference):
    audio = torch.randn(1, 40_000) * 0.1
    push(rest_model, rest_reference, audio[:, :30_000], 16_000)
    got = push(rest_model, rest_reference, audio, 16_000, restart=True, end=True)["result"][0]
    assert torch.equal(got, whole_clip_frames(rest_model, rest_reference, audio, 16_000))


def test_the_same_model_loaded_again_continues_the_session_exactly(comfy, rest_model, rest_reference):
    audio = torch.randn(1, 40_000) * 0.1
    first = push(rest_model, rest_reference, audio[:, :20_000], 16_000)["result"][0]
    reloaded = load_again()
    assert reloaded.pipe is not rest_model.pipe and reloaded.identity == rest_model.identity
    rest = push(reloaded, rest_reference, audio[:, 20_000:], 16_000, end=True)["result"][0]
    assert torch.equal(torch.cat([first, rest]), whole_clip_frames(rest_model, rest_reference, audio, 16_000))


def test_a_model_of_another_dtype_is_refused(comfy, rest_model, rest_reference):
    other = "float32" if next(rest_model.pipe.dit.parameters()).dtype == torch.bfloat16 else "bfloat16"  # auto's pick
    push(rest_model, rest_reference, torch.randn(1, 20_000) * 0.1, 16_000)
    with pytest.raises(ValueError, match="started with another model"):
        push(load_again(other), rest_reference, torch.randn(1, 20_000) * 0.1, 16_000)


def test_the_live_node_always_runs(comfy):
    value = RESTLiveSampler.IS_CHANGED()
    assert value != value  # NaN: ComfyUI never serves a cached result for a piece
