// The live chunk player on REST Streaming Sampler, REST Live Sampler and REST Render Video: each `rest.chunk` event
// from the server carries one decoded chunk (JPEG frames + its 16 kHz audio); the player shows the video as it
// grows, with the sound in sync. When generation runs behind real time the player holds the last frame and the sound
// waits, then both go on together when the next chunk arrives. Replay plays the stream received so far again; removing
// the node stops the player's animation loop and sound and releases its frames.
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const PLAYER_NODES = ["RESTStreamingSampler", "RESTLiveSampler", "RESTRenderVideo"];
const LEAD_SECONDS = 0.15; // scheduling margin for a chunk that arrives when its time has already come
const VIDEO_HEIGHT = 256; // pixels on the node, whatever the model's resolution

function decodePcm16(base64) {
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const pcm = new Int16Array(bytes.buffer);
  const out = new Float32Array(pcm.length);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i] / 32768;
  return out;
}

class ChunkPlayer {
  constructor() {
    this.element = document.createElement("div");
    this.element.className = "rest-player";
    this.element.style.cssText = "display:flex;flex-direction:column;gap:4px;width:100%;height:100%;";
    this.canvas = document.createElement("canvas");
    this.canvas.style.cssText = `height:${VIDEO_HEIGHT}px;max-width:100%;object-fit:contain;background:#111;` +
      "align-self:center;";
    this.status = document.createElement("div");
    this.status.style.cssText = "font:12px sans-serif;color:#aaa;display:flex;gap:8px;align-items:center;";
    this.label = document.createElement("span");
    this.replayButton = document.createElement("button");
    this.replayButton.textContent = "replay";
    this.replayButton.onclick = () => this.replay();
    this.status.append(this.label, this.replayButton);
    this.element.append(this.canvas, this.status);
    this.canvas.onclick = () => this.audioContext()?.resume();
    this.stream = null;
    this.chunks = []; // every chunk received for the current stream, in order
    this.frames = []; // ImageBitmap per frame index, filled as chunks decode
    this.shown = -1; // the frame index on the canvas
    this.label.textContent = "waiting for the first chunk";
    this.animation = requestAnimationFrame(() => this.draw());
  }

  audioContext() {
    if (!this.ctx && !this.disposed && window.AudioContext) this.ctx = new AudioContext();
    return this.ctx;
  }

  // The playback clock: the audio clock when sound can play, the page clock otherwise.
  now() {
    return this.withSound ? this.ctx.currentTime : performance.now() / 1000;
  }

  // Stops the sound and the timeline; the frames stay.
  rewind() {
    this.start = null; // clock time of frame 0
    this.sources?.forEach((s) => s.stop());
    this.sources = [];
    const ctx = this.audioContext();
    this.withSound = !!ctx && ctx.state === "running";
  }

  reset(stream) {
    this.stream = stream;
    this.chunks = [];
    this.frames.forEach((bitmap) => bitmap?.close());
    this.frames = [];
    this.rewind();
  }

  // The node is gone: nothing of the player may keep running or holding memory.
  dispose() {
    this.disposed = true;
    cancelAnimationFrame(this.animation);
    this.reset(null);
    this.ctx?.close();
    this.ctx = null;
  }

  async add(chunk) {
    if (chunk.stream !== this.stream) this.reset(chunk.stream);
    this.chunks.push(chunk);
    this.fps = chunk.fps;
    this.total = chunk.total_frames;
    const bitmaps = await Promise.all(chunk.frames.map((b64) =>
      fetch(`data:image/jpeg;base64,${b64}`).then((r) => r.blob()).then((blob) => createImageBitmap(blob))));
    if (chunk.stream !== this.stream || this.disposed) {
      bitmaps.forEach((bitmap) => bitmap.close());
      return;
    }
    bitmaps.forEach((bitmap, i) => { this.frames[chunk.first_frame + i] = bitmap; });
    this.canvas.width = chunk.width;
    this.canvas.height = chunk.height;
    this.schedule(chunk);
  }

  // Starts the chunk's sound at its frame time, moving the whole timeline later if the chunk came late.
  schedule(chunk) {
    const due = chunk.first_frame / this.fps;
    if (this.start === null || this.start + due < this.now() + LEAD_SECONDS) {
      this.start = this.now() + LEAD_SECONDS - due;
    }
    if (!this.withSound) return;
    const samples = decodePcm16(chunk.audio);
    const buffer = this.ctx.createBuffer(1, samples.length, chunk.audio_rate);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    source.start(this.start + due);
    this.sources.push(source);
  }

  replay() {
    this.rewind();
    this.chunks.forEach((chunk) => this.schedule(chunk));
  }

  draw() {
    this.animation = requestAnimationFrame(() => this.draw());
    if (this.start === null || this.start === undefined) return;
    const made = this.chunks.reduce((n, c) => n + c.frames.length, 0);
    let index = Math.floor((this.now() - this.start) * this.fps);
    index = Math.max(0, Math.min(index, made - 1));
    const frame = this.frames[index];
    if (frame) {
      this.canvas.getContext("2d").drawImage(frame, 0, 0, this.canvas.width, this.canvas.height);
      this.shown = index;
    }
    const of = this.total ? ` of ${this.total}` : "";
    const sound = this.withSound ? "" : " (no sound: click the video to allow it)";
    this.label.textContent = `chunk ${this.chunks.length} - ${made}${of} frames - frame ${index + 1}${sound}`;
  }
}

app.registerExtension({
  name: "comfyui-rest.player",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!PLAYER_NODES.includes(nodeData.name)) return;
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = created?.apply(this, arguments);
      this.restPlayer = new ChunkPlayer();
      this.addDOMWidget("rest_player", "rest_player", this.restPlayer.element, {
        serialize: false,
        getMinHeight: () => VIDEO_HEIGHT + 30,
      });
      this.setSize([Math.max(this.size[0], 320), this.size[1] + VIDEO_HEIGHT + 30]);
      return result;
    };
    const removed = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      this.restPlayer?.dispose();
      this.restPlayer = null;
      return removed?.apply(this, arguments);
    };
  },
  setup() {
    api.addEventListener("rest.chunk", ({ detail }) => {
      const node = app.graph?.getNodeById(detail.node) ?? app.graph?.getNodeById(Number(detail.node));
      node?.restPlayer?.add(detail);
    });
  },
});
