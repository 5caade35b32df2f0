"""Data preparation: a folder of talking-head videos -> training data, in two passes.

    python -m rest_core prepare clips   --videos corpus/train --out data/demo
    python -m rest_core prepare latents --data data/demo --vae runs/vae/vae.safetensors \
                                        --speech-ae runs/speechae/speech_ae.safetensors

`clips` reads every video (mp4, mov, mkv, webm, avi, m4v; synthetic or HDTF/MEAD), resamples it to 25 fps by
nearest timestamp, crops a square and resizes it (antialiased bilinear, as the pipeline treats a portrait) to
the model's resolution, and computes the Whisper feature window of every latent frame from the audio, exactly as
the streaming speech path does at inference. Where a sidecar `<video>.json` has a `mouth_box`, the index keeps it
in the prepared frames' pixels (VAE training can cut its windows around the mouth), and where it has the mouth's
opening and width per frame (`mouth_open`, `mouth_width` in [0, 1], at 25 fps), the clip keeps them as its
`mouth_state` (a `mouth_code` VAE's latents carry them, vae_mouth.py), and where it has the head's pose and the
blinks (`head`, `blink`), the clip keeps the head's map from head units to the prepared frames' pixels per frame and
the eyes' closure (a `pose_code` VAE's, vae_pose.py; data.face_code). The square (`--crop`) is the
largest centred one by default ("full"), the framing the video has: the synthetic corpus places its faces at any
size and position, as users' portraits are, and pre-cropped datasets such as HDTF need nothing else. "face" crops
the face box of a sidecar `<video>.json` with `"face_box": [x0, y0, x1, y1]` instead (the synthetic corpus writes
one; for other footage any face detector can), the centred square where there is none.
Output: clips/shard-NNNNN.safetensors (`<name>/frames` uint8 [T, R, R, 3], `<name>/windows` float16
[latent frames, H_w, 384], `<name>/mouth_state` float16 [T, 2], `<name>/head` float32 [T, 2, 3] and `<name>/closure`
float16 [T] if known) and clips/index.json (per clip: name, source, frames, crop box, mouth box if known, whether it
has a mouth state and a head pose, the head's outline in head units).

`latents` cuts each clip into training segments and encodes them with the trained (frozen) VAE and SpeechAE. A
segment is the clip's first frame as the reference, then K chunks from frame 8m: the reference's latent (z_R, the
first frame encoded alone, exactly as a portrait is) and the latents of frames [8m, 8m + 24K) as the clip's stream
has them. The clip's stream is [frame 0] + frames [8, ...) encoded as one causal clip with frame 0 as the portrait,
so latent m covers frames [8m, 8m + 8); a run of overlapping segments is encoded once and sliced (the encoder is
causal, so a segment's latents do not depend on the frames after it), in pieces of at most STREAM_LATENTS latents
so that a long video's memory stays bounded. The reference is the clip's first frame wherever the chunks are, as at
inference, where the portrait is one still that the whole stream is made from: a reference-conditioned VAE's latents
say how a frame differs from its reference, and with the frame just before the chunks as the reference (as this was
first written) the mouth's code depended on that frame's own, unknown opening; the DiTs trained on it learnt
nothing from the speech (docs/TRAINING.md). The synthetic corpus opens every clip with the mouth shut, as a portrait
is. Its speech is the SpeechAE latents of the clip's windows m .. m + cK - 1: output frame 0 of the segment is clip
frame 8m, on latent frame m of the clip's audio.
Output: segments/shard-NNNNN.safetensors (`latents` [S, C, 1 + cK, h, w], `speech` [S, cK, h_w, d_A], `clip`, and
`start` [S]: the chunks' first frame, 8m) and segments/index.json, written last: a folder without it is unfinished.
The pass takes hours on a CPU, so it resumes: every shard ends at a clip's end and segments/progress.json says how
many clips are done and what they were made from (a digest of the VAE encoder's and SpeechAE's weights, the clips'
index and the segment options: tuning the VAE's decoder alone keeps them); a run from the same sources goes on after
the last shard, one from others starts again, and a finished folder from the same sources is kept as it is.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..config import FPS, VAE_TEMPORAL, RESTConfig
from ..media import to_uint8
from ..reference import CropBox, square_pixels
from ..speech import SAMPLES_PER_VIDEO_FRAME, prepare_audio, speech_features
from ..vae_pose import homogeneous
from ..whisper import SAMPLE_RATE
from ..whisper_import import default_whisper_encoder, load_whisper_encoder
from .face_code import FaceTruth, encode_stream, view_matrix

VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"}


# --- reading videos ------------------------------------------------------------------------------------------

def find_videos(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: give the folder that holds the videos")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise ValueError(f"{folder} holds no videos ({', '.join(sorted(VIDEO_SUFFIXES))})")
    return videos


def read_frames_25fps(path: Path) -> np.ndarray:
    """All frames of the first video stream, resampled to 25 fps by nearest earlier timestamp. [T, H, W, 3] uint8"""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            frames, times = [], []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                times.append(float(frame.time) if frame.time is not None else len(times) / FPS)
    except av.FFmpegError as e:
        raise ValueError(f"{path} could not be decoded ({e})") from e
    if not frames:
        raise ValueError(f"{path}: the video stream has no frames")
    times = np.asarray(times) - times[0]
    count = int(np.floor(times[-1] * FPS + 1e-6)) + 1
    # frame i shows what is on screen at i / 25 s: the last source frame that started by then
    pick = np.searchsorted(times, np.arange(count) / FPS + 1e-6, side="right") - 1
    return np.stack([frames[i] for i in pick])


CROPS = ("full", "face")  # the squares `prepare clips` and `eval` can cut from a video; the first is the default


def crop_square(path: Path, height: int, width: int, crop: str = CROPS[0]) -> CropBox:
    """The square to crop: for "face" the sidecar's face_box, else (and without one) the largest centred square."""
    if crop not in CROPS:
        raise ValueError(f"crop={crop!r}: choose one of {', '.join(CROPS)}")
    sidecar = path.with_suffix(".json")
    if crop == "face" and sidecar.is_file():
        box = json.loads(sidecar.read_text()).get("face_box")
        if box is not None:
            x0, y0, x1, y1 = (int(round(v)) for v in box)
            size = min(x1 - x0, y1 - y0)
            if size < 32 or x0 < 0 or y0 < 0 or x0 + size > width or y0 + size > height:
                raise ValueError(f"{sidecar}: face_box {box} must be a square of at least 32 pixels inside the "
                                 f"{width}x{height} frame")
            return CropBox(top=y0, left=x0, size=size)
    return CropBox.centred(height, width)


def sidecar_mouth_box(path: Path) -> list[float] | None:
    """The box the mouth stays in over the whole clip, [x0, y0, x1, y1] in the video's pixels, from a sidecar
    `<video>.json` (the synthetic corpus writes one); None without one."""
    sidecar = path.with_suffix(".json")
    box = json.loads(sidecar.read_text()).get("mouth_box") if sidecar.is_file() else None
    if box is not None and (len(box) != 4 or not box[0] < box[2] or not box[1] < box[3]):
        raise ValueError(f"{sidecar}: mouth_box {box} must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
    return box


MOUTH_STATE = ("mouth_open", "mouth_width")  # a sidecar's per-frame truth of the mouth, each in [0, 1]
MOUTH_AT_REST_BELOW = 0.02  # a frame whose opening is under this shows the mouth at rest


def sidecar_mouth_state(path: Path, count: int, meta: dict | None = None) -> np.ndarray | None:
    """The mouth's opening and width in each of the first `count` frames, [count, 2], from a sidecar `<video>.json`
    at 25 fps (the synthetic corpus writes them; `meta`: the sidecar already read); None without them."""
    sidecar = path.with_suffix(".json")
    if meta is None:
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    if not all(key in meta for key in MOUTH_STATE):
        return None
    if meta.get("fps") != 25 or any(len(meta[key]) < count for key in MOUTH_STATE):
        raise ValueError(f"{sidecar}: {' and '.join(MOUTH_STATE)} must give every one of the video's {count} frames "
                         f"at fps 25 (it says fps {meta.get('fps')})")
    return np.stack([np.asarray(meta[key][:count], dtype=np.float32) for key in MOUTH_STATE], axis=1)


class SidecarHead(NamedTuple):
    maps: np.ndarray  # [count, 2, 3]: the head's map from head units to the video's pixels, per frame
    closure: np.ndarray  # [count]: the eyes' closure, per frame
    outline: np.ndarray  # [P, 2]: the region that moves with the head, in head units (drawing.head_hull)


def sidecar_head(path: Path, count: int, meta: dict | None = None) -> SidecarHead | None:
    """The head's placement in each of the first `count` frames, the eyes' closure and the head's outline, from a
    sidecar `<video>.json` at 25 fps (the synthetic corpus' `head`, `identity` with its `face_centre` and `unit_px`,
    and `blink`); None without them."""
    from .drawing import head_hull, transforms

    sidecar = path.with_suffix(".json")
    if meta is None:
        meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    head, identity = meta.get("head"), meta.get("identity", {})
    if head is None or "blink" not in meta or "face_centre" not in identity or "unit_px" not in identity:
        return None
    keys = ("dx", "dy", "angle", "scale")
    if meta.get("fps") != 25 or any(len(head.get(k, ())) < count for k in keys) or len(meta["blink"]) < count:
        raise ValueError(f"{sidecar}: head ({', '.join(keys)}) and blink must give every one of the video's {count} "
                         f"frames at fps 25 (it says fps {meta.get('fps')})")
    maps = transforms({k: np.asarray(head[k][:count], dtype=np.float64) for k in keys},
                      np.asarray(identity["face_centre"], dtype=np.float64), float(identity["unit_px"]))
    return SidecarHead(maps, np.asarray(meta["blink"][:count], dtype=np.float32), head_hull(identity))


def head_in_square(head: SidecarHead, box: CropBox, resolution: int) -> torch.Tensor:
    """The head's map per frame from head units into the pixels of the square `box` cut and resized to
    `resolution`, as `prepare clips` and the held-out clips cut their frames.  float64 [count, 2, 3]"""
    to_square = view_matrix((box.top, box.left, box.size, box.size), (resolution, resolution))
    return (to_square @ homogeneous(torch.from_numpy(head.maps)))[:, :2]


def crop_resize(frames: np.ndarray, box: CropBox, resolution: int) -> np.ndarray:
    """[T, H, W, 3] uint8 -> the box at resolution x resolution, cut as a portrait is (`square_pixels`), as uint8."""
    out = [to_uint8(square_pixels(torch.from_numpy(frames[i:i + 64]), box, resolution))
           .permute(0, 2, 3, 1).numpy() for i in range(0, len(frames), 64)]
    return np.concatenate(out)


# --- pass 1: clips ---------------------------------------------------------------------------------------------

def prepare_clips(videos: str | Path, out: str | Path, config: RESTConfig, whisper=None, shard_clips: int = 32,
                  crop: str = CROPS[0], workers: int = 1, log=sys.stderr) -> dict:
    """`whisper`: an encoder, a weights file or None (the pinned tiny.en); `workers` > 1 prepares shards in that
    many processes, each loading the encoder from the file (an encoder object cannot be handed to them)."""
    paths = find_videos(videos)
    out = Path(out) / "clips"
    out.mkdir(parents=True, exist_ok=True)
    index = {"resolution": config.resolution, "crop": crop, "context_left": config.speech.context_left,
             "context_right": config.speech.context_right, "clips": [], "shards": []}
    groups = [paths[i:i + shard_clips] for i in range(0, len(paths), shard_clips)]
    jobs = [(group, str(videos), str(out / f"shard-{k:05d}.safetensors"), config.to_json(), crop) for k, group in
            enumerate(groups)]
    started, done = time.perf_counter(), 0

    def gather(entries: list[dict], skipped: list[str], shard: str):
        nonlocal done
        for message in skipped:
            log.write(message)
        if entries:
            index["clips"] += [entry | {"shard": len(index["shards"])} for entry in entries]
            index["shards"].append(shard)
        done += len(entries) + len(skipped)
        log.write(f"\r[prepare clips] {done}/{len(paths)}  {done / (time.perf_counter() - started):.2f} videos/s ")

    if workers > 1 and len(jobs) > 1:
        if whisper is not None and not isinstance(whisper, (str, Path)):
            raise ValueError("prepare clips with workers > 1 loads the Whisper encoder in each worker: give its file")
        import multiprocessing

        # spawn, not fork: the parent has torch loaded, and forked OpenMP thread pools can hang
        with multiprocessing.get_context("spawn").Pool(workers, initializer=_quiet_worker,
                                                       initargs=(None if whisper is None else str(whisper),)) as pool:
            for result in pool.imap(_prepare_shard_in_worker, jobs):
                gather(*result)
    else:
        if whisper is None or isinstance(whisper, (str, Path)):
            whisper = default_whisper_encoder() if whisper is None else load_whisper_encoder(whisper)
        for job in jobs:
            gather(*prepare_shard(*job, whisper))
    log.write("\n")
    if not index["clips"]:
        raise ValueError(f"no usable clips in {videos}: every video was shorter than {1 + VAE_TEMPORAL} frames")
    (out / "index.json").write_text(json.dumps(index, indent=1))
    return index


def prepare_shard(paths: list[Path], videos: str, shard: str, config_json: str, crop: str,
                  encoder) -> tuple[list[dict], list[str], str]:
    """One shard's videos -> its file (when a clip is usable), the index entries of its clips (without the shard
    number), the messages of the videos it skipped, and the shard's file name."""
    from ..media import read_audio

    config = RESTConfig.from_json(config_json)
    left, right = config.speech.context_left, config.speech.context_right
    tensors, entries, skipped = {}, [], []
    for path in paths:
        frames = read_frames_25fps(path)
        waveform, rate = read_audio(path)
        audio = prepare_audio(waveform, rate)  # [N] mono 16 kHz
        count = min(len(frames), round(len(audio) / SAMPLES_PER_VIDEO_FRAME))
        if count < 1 + VAE_TEMPORAL:
            skipped.append(f"skipping {path}: {count} frames with audio; a clip needs at least {1 + VAE_TEMPORAL}\n")
            continue
        box = crop_square(path, *frames.shape[1:3], crop)
        pixels = crop_resize(frames[:count], box, config.resolution)
        windows = speech_features(encoder, audio, SAMPLE_RATE, left, right, batch=64)  # [latent frames, H_w, width]
        name = path.relative_to(videos).with_suffix("").as_posix()
        tensors[f"{name}/frames"] = torch.from_numpy(pixels)
        tensors[f"{name}/windows"] = windows.to(torch.float16)
        entry = {"name": name, "source": path.relative_to(videos).as_posix(), "frames": count,
                 "box": [box.top, box.left, box.size]}
        mouth = sidecar_mouth_box(path)
        if mouth is not None:
            entry["mouth_box"] = [round(v, 2) for v in box.map(mouth, config.resolution)]
        state = sidecar_mouth_state(path, count)
        if state is not None:
            tensors[f"{name}/mouth_state"] = torch.from_numpy(state).to(torch.float16)
            entry["mouth_state"] = True
        head = sidecar_head(path, count)
        if head is not None:
            tensors[f"{name}/head"] = head_in_square(head, box, config.resolution).float()
            tensors[f"{name}/closure"] = torch.from_numpy(head.closure).to(torch.float16)
            entry["head"] = True
            entry["head_outline"] = np.round(head.outline, 4).tolist()
        entries.append(entry)
    if tensors:
        save_file(tensors, shard)
    return entries, skipped, Path(shard).name


_worker_encoder = None  # each worker process's Whisper encoder, loaded once


def _quiet_worker(whisper: str | None):
    global _worker_encoder
    torch.set_num_threads(1)  # the parallelism is the pool's processes
    _worker_encoder = default_whisper_encoder() if whisper is None else load_whisper_encoder(whisper)


def _prepare_shard_in_worker(job: tuple) -> tuple[list[dict], list[str], str]:
    return prepare_shard(*job, _worker_encoder)


class ClipSet:
    """Prepared clips, read lazily: frames by slice, so a training batch reads only the frames it uses."""

    def __init__(self, data: str | Path):
        folder = Path(data) / "clips"
        if not (folder / "index.json").is_file():
            raise ValueError(f"{folder}/index.json not found: run `python -m rest_core prepare clips` first")
        self.folder = folder
        self.index = json.loads((folder / "index.json").read_text())
        self.clips = self.index["clips"]
        self._open: dict[int, object] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def _file(self, clip: dict):
        shard = clip["shard"]
        if shard not in self._open:
            self._open[shard] = safe_open(str(self.folder / self.index["shards"][shard]), framework="pt")
        return self._open[shard]

    def frames(self, i: int, start: int = 0, count: int | None = None) -> torch.Tensor:
        """uint8 [count, R, R, 3]"""
        clip = self.clips[i]
        stop = clip["frames"] if count is None else start + count
        return self._file(clip).get_slice(f"{clip['name']}/frames")[start:stop]

    def mouth_state(self, i: int, start: int = 0, count: int | None = None) -> torch.Tensor:
        """The mouth's opening and width per frame (MOUTH_STATE), from the video's sidecar.  float32 [count, 2]"""
        clip = self.clips[i]
        if not clip.get("mouth_state"):
            raise ValueError(f"{self.folder}: clip {clip['name']} has no mouth state; prepare clips from videos whose "
                             f"sidecar gives {' and '.join(MOUTH_STATE)} per frame")
        stop = clip["frames"] if count is None else start + count
        return self._file(clip).get_slice(f"{clip['name']}/mouth_state")[start:stop].float()

    def face_truth(self, i: int) -> FaceTruth:
        """What the sidecar said of every frame of clip i (data.face_code): the mouth's box and state, and the head's
        placement, outline and the eyes' closure where the clip has them."""
        clip, f = self.clips[i], self._file(self.clips[i])
        head = closure = outline = None
        if clip.get("head"):
            head = f.get_tensor(f"{clip['name']}/head").double()
            closure = f.get_tensor(f"{clip['name']}/closure").float()
            outline = torch.tensor(clip["head_outline"], dtype=torch.float64)
        return FaceTruth(clip["mouth_box"], self.mouth_state(i), head, closure, outline)

    def check_code(self, pose: bool, indices: list[int] | None = None):
        """A coded VAE reads the mouth (and with `pose` the head's pose and the blinks) from a code the data supplies:
        every clip it is trained on or encodes needs them per frame (from the videos' sidecars)."""
        def lacks(clip: dict) -> bool:
            return "mouth_box" not in clip or not clip.get("mouth_state") or (pose and not clip.get("head"))

        lacking = [self.clips[i]["name"] for i in (range(len(self)) if indices is None else indices)
                   if lacks(self.clips[i])]
        if lacking:
            what = "the mouth's box and state, the head's pose and the blink" if pose else "the mouth's box and state"
            raise ValueError(f"{self.folder}: the VAE reads a code the data supplies (mouth_code, pose_code), and "
                             f"{len(lacking)} clips ({lacking[0]}, ...) are without {what} per frame; prepare the "
                             f"clips again from videos whose sidecars give them")

    def windows(self, i: int) -> torch.Tensor:
        """float32 [latent frames, H_w, 384]"""
        clip = self.clips[i]
        return self._file(clip).get_tensor(f"{clip['name']}/windows").float()


# --- pass 2: segments ------------------------------------------------------------------------------------------

STREAM_LATENTS = 16  # latents encoded at once (16 latents are 129 frames): bounds a long video's memory


def segment_starts(frames: int, chunks: int, chunk_latents: int, stride: int) -> list[int]:
    """Latent index m of every segment that fits: chunk frames [8m, 8m + 8cK), after the clip's first frame."""
    span = VAE_TEMPORAL * chunk_latents * chunks
    return list(range(1, (frames - span) // VAE_TEMPORAL + 1, stride))


def stream_runs(starts: list[int], span: int, most: int) -> list[list[int]]:
    """Segment starts grouped so that each group's latents [first start, last start + span) are at most `most`
    long (or one segment's): each group is encoded as one stream and sliced into its segments."""
    runs: list[list[int]] = []
    for m in starts:
        if runs and m + span - runs[-1][0] <= max(most, span):
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def to_video(frames: torch.Tensor) -> torch.Tensor:
    """uint8 [T, H, W, 3] -> [1, 3, T, H, W] in [-1, 1]"""
    return (frames.permute(3, 0, 1, 2).contiguous().float() / 127.5 - 1)[None]  # uint8 made contiguous: cheaper


def segments_source(vae, speech_ae, clips: ClipSet, chunks: int, stride: int, stream_latents: int) -> str:
    """A digest of everything a segments folder is made from: the frozen encoders' weights (of the VAE, its encoder
    and latent statistics: a VAE whose decoder alone was tuned makes the same segments), the clips, the options."""
    digest = hashlib.sha256()
    made_of = [(k, v) for k, v in vae.state_dict().items() if k.startswith(("encoder.", "latents_"))]
    for name, tensor in sorted(made_of + list(speech_ae.state_dict().items())):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().numpy().tobytes())  # float: numpy has no bfloat16
    digest.update(json.dumps([clips.index, chunks, stride, stream_latents], sort_keys=True).encode())
    return digest.hexdigest()


def _write_json(path: Path, value: dict):
    """Written whole or not at all: the pass may be stopped at any moment."""
    part = path.with_suffix(".part")
    part.write_text(json.dumps(value, indent=1))
    part.replace(path)


@torch.no_grad()
def prepare_segments(data: str | Path, vae, speech_ae, config: RESTConfig, chunks: int = 3, stride: int = 1,
                     shard_segments: int = 512, stream_latents: int = STREAM_LATENTS, device="cpu",
                     log=sys.stderr) -> dict:
    """A coded VAE's encoder sees the chunks without the mouth and their latents carry the code of the clips' known
    mouth state (and head pose and blinks; data.face_code). Resumes an unfinished pass from the same
    sources (module docstring)."""
    clips = ClipSet(data)
    coded, pose = vae.config.mouth_code, vae.config.pose_code
    if coded:
        clips.check_code(pose)
    if clips.index["resolution"] != config.resolution:
        raise ValueError(f"the clips are {clips.index['resolution']} px, the VAE's config {config.resolution} px: "
                         f"prepare the clips again with the same preset")
    out = Path(data) / "segments"
    out.mkdir(parents=True, exist_ok=True)
    c = config.chunk_latents
    source = segments_source(vae, speech_ae, clips, chunks, stride, stream_latents)
    finished, progress = out / "index.json", out / "progress.json"
    if finished.is_file():
        index = json.loads(finished.read_text())
        if index.get("source") == source:
            log.write(f"[prepare latents] {out} is already made from these weights, clips and options\n")
            return index
        finished.unlink()
    index = json.loads(progress.read_text()) if progress.is_file() else {}
    if index.get("source") != source:
        for old in out.glob("shard-*.safetensors"):
            old.unlink()
        index = {"source": source, "chunks": chunks, "chunk_latents": c, "stride": stride, "shards": [],
                 "segments": 0, "clips_done": 0}
    elif index["clips_done"]:
        log.write(f"[prepare latents] resuming after clip {index['clips_done']}/{len(clips)}\n")
    vae, speech_ae = vae.to(device).eval(), speech_ae.to(device).eval()
    latents, speech, clip_ids, starts = [], [], [], []
    started, first_clip = time.perf_counter(), index["clips_done"]

    def flush(clips_done: int):
        if latents:
            name = f"shard-{len(index['shards']):05d}.safetensors"
            save_file({"latents": torch.cat(latents), "speech": torch.cat(speech),
                       "clip": torch.tensor(clip_ids), "start": torch.tensor(starts)}, str(out / name))
            index["shards"].append(name)
            index["segments"] += len(clip_ids)
            latents.clear(), speech.clear(), clip_ids.clear(), starts.clear()
        index["clips_done"] = clips_done
        _write_json(progress, index)

    for i in range(first_clip, len(clips)):
        count = clips.clips[i]["frames"]
        frames, windows = clips.frames(i), clips.windows(i).to(device)
        truth = clips.face_truth(i) if coded else None
        for run in stream_runs(segment_starts(count, chunks, c, stride), c * chunks, stream_latents):
            first, last = run[0], run[-1] + c * chunks  # latents [first, last) of the clip's stream
            picked = [0, *range(VAE_TEMPORAL * first, VAE_TEMPORAL * last)]
            video = to_video(frames[picked]).to(device)
            code = None if truth is None else truth.code(picked, 0, video.shape[-2:], pose).to(device)
            stream = vae.normalize(encode_stream(vae, video, code)).cpu()  # [1, C, 1 + last - first, h, w]
            for m in run:
                at = 1 + m - first
                latents.append(torch.cat([stream[:, :, :1], stream[:, :, at:at + c * chunks]], dim=2))
                speech.append(speech_ae.encode(windows[m:m + c * chunks])[None].cpu())  # [1, cK, h_w, d_A]
                clip_ids.append(i)
                starts.append(VAE_TEMPORAL * m)
        if len(clip_ids) >= shard_segments:  # shards end at a clip's end: a resumed pass starts at the next clip
            flush(i + 1)
        log.write(f"\r[prepare latents] clip {i + 1}/{len(clips)}  "
                  f"{(i + 1 - first_clip) / (time.perf_counter() - started):.2f} clips/s ")
    flush(len(clips))
    log.write("\n")
    if index["segments"] == 0:
        raise ValueError(f"no clip in {data} is long enough for one segment of {chunks} chunks "
                         f"({1 + VAE_TEMPORAL * c * chunks + VAE_TEMPORAL - 1} frames)")
    del index["clips_done"]
    _write_json(finished, index)
    progress.unlink()
    return index


class SegmentSet:
    """All training segments in memory (they are small: a few kB each at the demo's size)."""

    def __init__(self, data: str | Path):
        folder = Path(data) / "segments"
        if not (folder / "index.json").is_file():
            raise ValueError(f"{folder}/index.json not found: run `python -m rest_core prepare latents` first")
        self.index = json.loads((folder / "index.json").read_text())
        parts = {"latents": [], "speech": [], "clip": [], "start": []}
        for name in self.index["shards"]:
            with safe_open(str(folder / name), framework="pt") as f:
                for key in parts:
                    parts[key].append(f.get_tensor(key))
        self.latents, self.speech, self.clip, self.start = (torch.cat(parts[k]) for k in parts)

    def __len__(self) -> int:
        return self.latents.shape[0]


# --- command line ----------------------------------------------------------------------------------------------

def configure(p):
    sub = p.add_subparsers(dest="pass_", required=True)
    c = sub.add_parser("clips", help="videos -> 25 fps square crops at the model's resolution + speech windows")
    c.add_argument("--videos", required=True, help="folder of talking-head videos (searched recursively)")
    c.add_argument("--out", required=True, help="data folder to write (clips/ inside it)")
    c.add_argument("--preset", default="rest-demo", help="model preset: sets the resolution and speech windows")
    c.add_argument("--whisper", default=None, help="Whisper weights (default: the pinned tiny.en)")
    c.add_argument("--crop", choices=CROPS, default=CROPS[0],
                   help="full: the largest centred square (default); face: the sidecar's face_box")
    c.add_argument("--shard-clips", type=int, default=32)
    c.add_argument("--workers", type=int, default=1, help="processes preparing shards in parallel (default 1)")
    s = sub.add_parser("latents", help="clips -> training segments encoded by the trained VAE and SpeechAE")
    s.add_argument("--data", required=True, help="the data folder `prepare clips` wrote")
    s.add_argument("--vae", required=True, help="vae.safetensors from `train vae`")
    s.add_argument("--speech-ae", required=True, help="speech_ae.safetensors from `train speechae`")
    s.add_argument("--chunks", type=int, default=3, help="chunks per segment (K)")
    s.add_argument("--stride", type=int, default=1, help="latent frames between segment starts")
    s.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda")


def run(args) -> int:
    if args.pass_ == "clips":
        config = RESTConfig.preset(args.preset)
        if args.workers < 1:
            raise ValueError(f"--workers must be at least 1 (got {args.workers})")
        index = prepare_clips(args.videos, args.out, config, args.whisper, args.shard_clips, args.crop, args.workers)
        print(f"{len(index['clips'])} clips -> {Path(args.out) / 'clips'}")
        return 0
    from ..checkpoint import load_part
    from ..precision import resolve_device

    vae, config = load_part(args.vae, "vae")
    speech_ae, speech_config = load_part(args.speech_ae, "speech_ae")
    if speech_config.speech != config.speech or speech_config.dit.speech_tokens != config.dit.speech_tokens:
        raise ValueError(f"{args.speech_ae} was trained for another speech config than {args.vae}")
    index = prepare_segments(args.data, vae, speech_ae, config, args.chunks, args.stride,
                             device=resolve_device(args.device))
    print(f"{index['segments']} segments -> {Path(args.data) / 'segments'}")
    return 0
