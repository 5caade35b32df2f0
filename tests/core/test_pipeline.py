import pytest
import torch
from safetensors.torch import save_file

from conftest import TINY_REST as TINY
from rest_core import CropBox
from rest_core.pipeline import RESTPipeline
from rest_core.speech import video_frames
from rest_core.whisper import WhisperEncoder

@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    return RESTPipeline.from_config(TINY, whisper=WhisperEncoder(layers=1))


@pytest.fixture(scope="module")
def portrait():
    torch.manual_seed(1)
    return torch.rand(1, 90, 70, 3)


@pytest.mark.parametrize("seconds, rate", [(0.01, 16_000), (0.53, 48_000), (0.96, 16_000), (2.23, 44_100)])
def test_the_video_has_exactly_the_audios_frame_count(pipe, portrait, seconds, rate):
    audio = torch.randn(2, int(seconds * rate)) * 0.1
    chunks = list(pipe.stream(portrait, audio, rate))
    expected = video_frames(-(-audio.shape[1] * 16_000 // rate))
    assert expected == max(1, round(seconds * 25))
    assert sum(c.frames.shape[0] for c in chunks) == expected
    assert all(c.frames.shape[1:] == (64, 64, 3) for c in chunks)
    assert all(c.frames.shape[0] == 24 for c in chunks[:-1])
    assert [c.first_frame for c in chunks] == [24 * k for k in range(len(chunks))]
    assert all(0 <= c.frames.min() and c.frames.max() <= 1 for c in chunks)


def test_live_pieces_give_the_same_video_as_the_whole_clip(pipe, portrait):
    audio = torch.randn(1, 40_000) * 0.1
    whole = pipe.generate(portrait, audio, 16_000, options=pipe.options(seed=3))
    g = torch.Generator().manual_seed(0)
    cuts = sorted(torch.randint(0, 40_000, (12,), generator=g).tolist())
    pieces = [audio[:, a:b] for a, b in zip([0] + cuts, cuts + [40_000])]
    live = pipe.stream_live(portrait, iter(pieces), 16_000, options=pipe.options(seed=3))
    live = torch.cat([c.frames for c in live])
    assert torch.equal(live, whole)


def test_the_first_chunk_comes_before_the_audio_has_ended(pipe, portrait):
    consumed = []

    def pieces():
        for i in range(10):  # 10 x 0.5 s
            consumed.append(i)
            yield torch.randn(8_000) * 0.1

    first = next(pipe.stream_live(portrait, pieces(), 16_000))
    assert first.index == 0 and len(consumed) < 10


def test_precomputed_speech_latents_give_the_same_video_as_the_stream(pipe, portrait):
    audio = torch.randn(2, 45_000) * 0.1  # 44.1 kHz stereo, 1.02 s
    speech = pipe.encode_speech(audio, 44_100)
    assert speech.video_frames == round(45_000 / 44_100 * 25)
    assert speech.latents.shape[1] % TINY.chunk_latents == 0
    ref, _ = pipe.encode_reference(portrait)
    video = pipe.video_stream(ref, options=pipe.options(seed=4))
    for e in speech.latents.split(TINY.chunk_latents, dim=1):
        video.add(e)
    video.end(speech.video_frames)
    frames = torch.cat([c.frames for c in video.pull()])
    assert torch.equal(frames, pipe.generate(portrait, audio, 44_100, options=pipe.options(seed=4)))
    stream = pipe.stream(portrait, audio, 44_100, options=pipe.options(seed=4))
    latents = torch.cat([c.latents for c in stream], dim=2)
    assert torch.equal(pipe.decode_latents(ref, latents, speech.video_frames), frames)


def test_a_video_stream_waits_for_its_speech_between_pulls(pipe, portrait):
    speech = pipe.encode_speech(torch.randn(60_000) * 0.1, 16_000)
    ref, _ = pipe.encode_reference(portrait)
    video = pipe.video_stream(ref, options=pipe.options(seed=2))
    assert list(video.pull()) == []  # nothing added: nothing made, and the stream stays usable
    parts = speech.latents.split(TINY.chunk_latents, dim=1)
    got = []
    for e in parts:
        video.add(e)
        got.append([c.index for c in video.pull()])
    assert got == [[k] for k in range(len(parts))]


def test_a_chosen_box_animates_that_square_of_the_portrait(pipe, portrait):
    audio = torch.randn(1, 16_000) * 0.1
    boxed = pipe.generate(portrait, audio, 16_000, CropBox(top=30, left=5, size=40), options=pipe.options(steps=1))
    one_step = pipe.options(steps=1)
    assert torch.equal(boxed, pipe.generate(portrait[:, 30:70, 5:45], audio, 16_000, options=one_step))
    assert not torch.equal(boxed, pipe.generate(portrait, audio, 16_000, options=pipe.options(steps=1)))


def test_a_mouth_box_is_refused_by_a_model_that_does_not_draw_the_mouth(pipe, portrait):
    with pytest.raises(ValueError, match="does not draw the mouth's shape"):
        pipe.encode_reference(portrait, mouth=[20, 50, 40, 60])


def test_a_mouth_box_opens_the_mouth_there_in_a_model_that_draws_it(portrait):
    import dataclasses

    from conftest import TINY_POSE

    torch.manual_seed(0)
    shape = dataclasses.replace(TINY_POSE, vae=dataclasses.replace(TINY_POSE.vae, mouth_shape=True))
    pipe = RESTPipeline.from_config(shape, whisper=WhisperEncoder(layers=1))
    ref, box = pipe.encode_reference(portrait, CropBox(top=20, left=0, size=70), mouth=[20, 50, 40, 60])
    torch.testing.assert_close(ref.mouth, torch.tensor([[20, 30, 40, 40]]) * 64 / 70)
    audio, one_step = torch.randn(1, 16_000) * 0.1, pipe.options(steps=1)
    given = pipe.generate(portrait, audio, 16_000, box, one_step, mouth=[20, 50, 40, 60])
    found = pipe.generate(portrait, audio, 16_000, box, one_step)  # a fresh shape finds no mouth: draws none
    changed = (given - found).abs().amax(dim=(0, 3))  # [H, W]
    ys, xs = torch.nonzero(changed > 0.5 * changed.amax(), as_tuple=True)
    middle = torch.tensor([35.0, 30.0]) * 64 / 70  # the box's middle (y, x) in the square's pixels
    assert changed.amax() > 0.1 and abs(ys.float().mean() - middle[0]) < 4 and abs(xs.float().mean() - middle[1]) < 4


def test_same_seed_same_video_other_seed_other_video(pipe, portrait):
    audio = torch.randn(20_000) * 0.1
    a = pipe.generate(portrait, audio, 16_000, options=pipe.options(seed=5))
    b = pipe.generate(portrait, audio, 16_000, options=pipe.options(seed=5))
    assert torch.equal(a, b)
    assert not torch.equal(a, pipe.generate(portrait, audio, 16_000, options=pipe.options(seed=6)))


def test_progress_is_reported_for_every_chunk_and_step(pipe, portrait):
    steps = []
    chunks = list(pipe.stream(portrait, torch.randn(36_000) * 0.1, 16_000, options=pipe.options(steps=3),
                              on_step=lambda k, i: steps.append((k, i))))
    assert steps == [(k, i) for k in range(len(chunks)) for i in range(3)]


@pytest.mark.parametrize("audio, word", [(torch.zeros(0), "empty"), (torch.tensor([0.0, float("nan")]), "NaN")])
def test_bad_audio_is_rejected_at_the_call(pipe, portrait, audio, word):
    with pytest.raises(ValueError, match=word):
        pipe.stream(portrait, audio, 16_000)


def test_checkpoint_round_trip_gives_the_same_video(pipe, portrait, tmp_path):
    path = tmp_path / "tiny.safetensors"
    pipe.save_pretrained(path)
    loaded = RESTPipeline.from_pretrained(path, whisper=pipe.whisper)
    assert loaded.config == TINY
    audio = torch.randn(20_000) * 0.1
    assert torch.equal(loaded.generate(portrait, audio, 16_000, options=loaded.options(seed=1)),
                       pipe.generate(portrait, audio, 16_000, options=pipe.options(seed=1)))


def test_a_bundled_speech_encoder_is_loaded_from_the_checkpoint(pipe, tmp_path):
    path = tmp_path / "bundled.safetensors"
    pipe.save_pretrained(path, include_whisper=True)
    loaded = RESTPipeline.from_pretrained(path)
    assert len(loaded.whisper.blocks) == 1
    assert torch.equal(loaded.whisper.conv1.weight, pipe.whisper.conv1.weight)


def test_bad_checkpoints_get_clear_errors(pipe, tmp_path):
    with pytest.raises(ValueError, match="not found"):
        RESTPipeline.from_pretrained(tmp_path / "missing.safetensors")
    pickle = tmp_path / "model.ckpt"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(ValueError, match="never loaded"):
        RESTPipeline.from_pretrained(pickle)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        RESTPipeline.from_pretrained(corrupt)
    other = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(other))
    with pytest.raises(ValueError, match="not a REST checkpoint"):
        RESTPipeline.from_pretrained(other)


def test_a_checkpoint_that_does_not_match_its_config_names_the_tensor(pipe, tmp_path):
    path = tmp_path / "tiny.safetensors"
    pipe.save_pretrained(path)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    tensors["dit.proj_out.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=r"dit\.proj_out\.weight has shape \[3, 3\]"):
        RESTPipeline.from_pretrained(path, whisper=pipe.whisper)


def rewritten(pipe, path, change, include_whisper=True):
    """The pipe's checkpoint at `path` with its tensors passed through `change(tensors)`."""
    from safetensors import safe_open
    pipe.save_pretrained(path, include_whisper=include_whisper)
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_a_bundled_speech_encoder_wider_than_whisper_tiny_is_refused_from_the_header(pipe, tmp_path):
    def widen(tensors):  # conv1 of an 8192-wide encoder; the rest of the file as it was
        tensors["whisper.conv1.weight"] = torch.zeros(8192, 80, 3, dtype=torch.float16)

    path = rewritten(pipe, tmp_path / "wide.safetensors", widen)
    with pytest.raises(ValueError, match=r"bundled speech encoder: conv1\.weight has shape \[8192, 80, 3\], "
                                         r"Whisper tiny's is \[384, 80, 3\]"):
        RESTPipeline.from_pretrained(path)


def test_a_bundled_speech_encoder_deeper_than_whisper_tiny_is_refused(pipe, tmp_path):
    def deepen(tensors):
        for key in [k for k in tensors if k.startswith("whisper.blocks.0.")]:
            for block in range(1, 6):
                tensors[key.replace("blocks.0.", f"blocks.{block}.")] = tensors[key].clone()

    path = rewritten(pipe, tmp_path / "deep.safetensors", deepen)
    with pytest.raises(ValueError, match="a Whisper encoder with 6 blocks, Whisper tiny has 4"):
        RESTPipeline.from_pretrained(path)


@pytest.mark.parametrize("dtype", [torch.bool, torch.complex64, torch.int8])
def test_a_weight_stored_as_anything_but_a_float_is_refused_naming_it(pipe, tmp_path, dtype):
    def spoil(tensors):
        tensors["vae.decoder.conv_in.conv.weight"] = torch.zeros_like(tensors["vae.decoder.conv_in.conv.weight"],
                                                                      dtype=dtype)

    path = rewritten(pipe, tmp_path / "spoilt.safetensors", spoil, include_whisper=False)
    with pytest.raises(ValueError, match=r"tensor vae\.decoder\.conv_in\.conv\.weight is stored as "):
        RESTPipeline.from_pretrained(path, whisper=pipe.whisper)


def test_a_tensor_the_config_does_not_have_is_refused_before_it_is_read(pipe, tmp_path):
    def add(tensors):
        tensors["dit.extra"] = torch.zeros(1)

    path = rewritten(pipe, tmp_path / "extra.safetensors", add, include_whisper=False)
    with pytest.raises(ValueError, match=r"unexpected tensor dit\.extra"):
        RESTPipeline.from_pretrained(path, whisper=pipe.whisper)


def fine_tuned(pipe, rank_one_change: bool = True):
    """A copy of the pipe whose DiT has one block matrix changed by a rank-1 matrix (or in full), its time table
    changed, and nothing else."""
    import copy
    tuned = copy.deepcopy(pipe)
    g = torch.Generator().manual_seed(5)
    weight = tuned.dit.transformer_blocks[0].ff.fc1.weight  # [out, in]
    with torch.no_grad():
        change = (torch.randn(weight.shape[0], 1, generator=g) @ torch.randn(1, weight.shape[1], generator=g)
                  if rank_one_change else torch.randn(weight.shape, generator=g))
        weight += 0.01 * change
        tuned.dit.scale_shift_table += 0.1
    return tuned


def test_a_fine_tuned_dit_is_stored_as_its_base_and_the_change_and_loads_as_the_fine_tune(pipe, portrait, tmp_path):
    from safetensors import safe_open
    tuned = fine_tuned(pipe)
    path = tmp_path / "tuned.safetensors"
    tuned.save_pretrained(path, fine_tuned_from={"dit": pipe.dit})
    with safe_open(str(path), "pt") as f:
        stored = {k: f.get_tensor(k) for k in f.keys()}
    # the base's weights as they were, and only the change beside them: a factor pair for the low-rank matrix
    assert torch.equal(stored["dit.transformer_blocks.0.ff.fc1.weight"], pipe.dit.transformer_blocks[0].ff.fc1.weight)
    deltas = sorted(k for k in stored if k.startswith("delta."))
    assert deltas == ["delta.dit.scale_shift_table", "delta.dit.transformer_blocks.0.ff.fc1.weight.down",
                      "delta.dit.transformer_blocks.0.ff.fc1.weight.up"]
    assert stored["delta.dit.transformer_blocks.0.ff.fc1.weight.up"].shape[1] == 1
    loaded = RESTPipeline.from_pretrained(path, whisper=pipe.whisper)
    for key, value in tuned.dit.state_dict().items():
        torch.testing.assert_close(loaded.dit.state_dict()[key], value, rtol=0, atol=1e-6)
    audio = torch.randn(16_000) * 0.1
    torch.testing.assert_close(loaded.generate(portrait, audio, 16_000, options=loaded.options(seed=1)),
                               tuned.generate(portrait, audio, 16_000, options=tuned.options(seed=1)),
                               rtol=0, atol=1e-4)


def test_a_change_of_full_rank_is_stored_whole(pipe, tmp_path):
    from safetensors import safe_open
    path = tmp_path / "tuned.safetensors"
    fine_tuned(pipe, rank_one_change=False).save_pretrained(path, fine_tuned_from={"dit": pipe.dit})
    with safe_open(str(path), "pt") as f:
        assert "delta.dit.transformer_blocks.0.ff.fc1.weight" in f.keys()


@pytest.mark.parametrize("change, message", [
    (lambda t: t.pop("delta.dit.transformer_blocks.0.ff.fc1.weight.down"), "needs both factors"),
    (lambda t: t.update({"delta.dit.transformer_blocks.0.ff.fc1.weight.down": torch.zeros(2, 3)}),
     r"fc1\.weight\.down has shape \[2, 3\]"),
    (lambda t: t.update({"delta.dit.scale_shift_table": torch.zeros(7)}), r"scale_shift_table has shape \[7\]"),
    (lambda t: t.update({"delta.dit.nothing.up": torch.zeros(2, 1)}), r"unexpected tensor delta\.dit\.nothing"),
])
def test_an_altered_change_is_refused_from_the_header(pipe, tmp_path, change, message):
    from safetensors import safe_open
    path = tmp_path / "tuned.safetensors"
    fine_tuned(pipe).save_pretrained(path, fine_tuned_from={"dit": pipe.dit})
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    change(tensors)
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(ValueError, match=message):
        RESTPipeline.from_pretrained(path, whisper=pipe.whisper)


def test_a_checkpoint_whose_config_asks_for_an_absurd_size_is_refused_before_any_allocation(pipe, tmp_path):
    import json

    path = tmp_path / "absurd.safetensors"
    pipe.save_pretrained(path)
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        metadata, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    config = json.loads(metadata["config"])
    config["dit"]["hidden"] = 1_000_000
    save_file(tensors, str(path), metadata=metadata | {"config": json.dumps(config)})
    with pytest.raises(ValueError, match=r"its config is not valid \(config dit\.hidden=1000000"):
        RESTPipeline.from_pretrained(path, whisper=pipe.whisper)


def test_a_model_larger_than_the_free_memory_is_refused_before_it_is_built(monkeypatch):
    import rest_core.checkpoint as checkpoint

    monkeypatch.setattr(checkpoint, "available_memory", lambda: 2**20)
    with pytest.raises(ValueError, match=r"needs .* GiB for its weights .* this machine has 0\.0 GiB free"):
        RESTPipeline.from_config(TINY, whisper=WhisperEncoder(layers=1))


def test_a_whisper_of_the_wrong_width_is_rejected():
    with pytest.raises(ValueError, match="384"):
        RESTPipeline.from_config(TINY, whisper=WhisperEncoder(width=512, heads=8, layers=1))


@pytest.mark.slow
def test_a_compiled_pipeline_makes_the_video_the_eager_one_does(pipe, portrait):
    compiled = RESTPipeline.from_config(TINY, whisper=WhisperEncoder(layers=1))
    for name, part in compiled.parts(include_whisper=True).items():
        part.load_state_dict(pipe.parts(include_whisper=True)[name].state_dict())
    assert compiled.compile() is compiled
    assert all(block._compiled_call_impl is not None for block in compiled.dit.transformer_blocks)
    audio = torch.randn(1, 30_000) * 0.1
    options = pipe.options(steps=2)
    assert torch.allclose(compiled.generate(portrait, audio, 16_000, options=options),
                          pipe.generate(portrait, audio, 16_000, options=options), atol=1e-4)
