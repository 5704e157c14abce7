"""attnflow.animate: a movie of a run's token trajectories (matplotlib frames, ffmpeg encoding).

    from attnflow import animate
    animate.movie("runs/movie", "movie.mp4", fps=10)      # or .gif

Command line: ``python3 -m attnflow.animate RUN_DIR --out movie.mp4|movie.gif [--fps N]``
(what ``attnflow animate`` calls). One frame per snapshot (at most ``max_frames``, evenly
spaced): the tokens on the circle (d = 2), the sphere (d = 3, the camera turning slowly) or the
top 3 principal directions of the final state (d > 3), colored by final cluster, with trails of
the last ``trail`` frames and the time in the title (the same display as ``attnflow view``).
Frames are drawn with the Agg canvas (no display) and piped to ffmpeg as raw RGBA; mp4 is
H.264 (yuv420p), gif uses a palette computed over the whole movie. The file is written
atomically.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from typing import Optional, Sequence

import numpy as np

from . import view as _view


class AnimateError(ValueError):
    """Bad arguments or an unreadable run (the message names the argument and the rule)."""


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if not exe:
        raise AnimateError("animate: ffmpeg not found (Debian package ffmpeg; scripts/install-deps.sh)")
    return exe


def movie(run_dir: str, out: str, fps: int = 10, size: int = 640, max_frames: int = 300,
          max_tokens: int = 2000, system: int = 0, trail: int = 6) -> dict:
    """Writes the movie; returns {"path", "frames", "width", "height", "fps"}."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    from .plot import _colors, cluster_labels

    ext = os.path.splitext(out)[1].lower()
    if ext not in (".mp4", ".gif"):
        raise AnimateError(f"animate: --out = {out}, must end in .mp4 or .gif")
    for name, v, lo in (("fps", fps, 1), ("size", size, 64), ("max_frames", max_frames, 1),
                        ("max_tokens", max_tokens, 1), ("system", system, 0), ("trail", trail, 0)):
        if int(v) < lo:
            raise AnimateError(f"animate: {name} = {v}, must be >= {lo}")
    if not os.path.isdir(run_dir):
        raise AnimateError(f"animate: RUN_DIR = {run_dir}, must be a directory")
    if os.path.exists(os.path.join(run_dir, "grid.csv")):
        raise AnimateError(f"animate: {run_dir} is a sweep; give one point's directory "
                           f"({run_dir}/points/point_NNNNNN)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise AnimateError(f"animate: --out {out}: directory {parent} does not exist")
    try:
        run = _view._Run(run_dir)
    except _view.ViewError as exc:
        raise AnimateError(str(exc).replace("view:", "animate:", 1)) from None
    if system >= run.systems:
        raise AnimateError(f"animate: system = {system}, must be < {run.systems} (the run's systems)")
    ffmpeg = _ffmpeg()

    stride = max(1, math.ceil(run.n / max_tokens))
    tokens = np.arange(0, run.n, stride)
    frames = _view._pick(len(run.files), max_frames)
    x = run.positions(system, frames, tokens)
    labels = cluster_labels(x[-1], run.delta)
    colors = np.array(_colors(labels))
    coords, info = _view.display_coords(x, len(tokens))
    times = run.times[frames]
    three = coords.shape[2] == 3
    r = 1.08 if info["sphere"] else 1.05 * info["scale"]

    size = int(size) // 2 * 2  # H.264 4:2:0 needs even sizes
    dpi = 100
    fig = Figure(figsize=(size / dpi, size / dpi), dpi=dpi)
    canvas = FigureCanvasAgg(fig)
    k_clusters = int(labels.max() + 1) if len(labels) else 0
    sub = f"{run.n} tokens" + (f" ({len(tokens)} shown)" if stride > 1 else "")
    sub += f", {k_clusters} final cluster{'s' if k_clusters != 1 else ''}"
    if info["view"] == "pca":
        sub += ", top 3 principal directions"
    if three:
        from mpl_toolkits.mplot3d.art3d import Line3DCollection

        fig.subplots_adjust(0, 0, 1, 0.9)
        ax = fig.add_subplot(1, 1, 1, projection="3d")
        if info["view"] == "sphere":
            u, v = np.mgrid[0:2 * np.pi:25j, 0:np.pi:13j]
            ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
        ax.set_xlim(-r, r), ax.set_ylim(-r, r), ax.set_zlim(-r, r)
        ax.set_box_aspect((1, 1, 1), zoom=1.4)
        ax.set_axis_off()
        trails = Line3DCollection([], linewidths=1.0, alpha=0.6)
        ax.add_collection3d(trails)
        pts = ax.scatter([], [], [], s=18, depthshade=False)
    else:
        fig.subplots_adjust(0.1, 0.07, 0.95, 0.86)
        ax = fig.add_subplot(1, 1, 1)
        if info["view"] == "circle":
            s = np.linspace(0, 2 * np.pi, 256)
            ax.plot(np.cos(s), np.sin(s), color="0.85", lw=1)
        ax.set_xlim(-r, r), ax.set_ylim(-r, r)
        ax.set_aspect("equal")
        trails = LineCollection([], linewidths=1.0, alpha=0.6)
        ax.add_collection(trails)
        pts = ax.scatter([], [], s=22)
    title = fig.suptitle("", fontsize=11)
    fig.text(0.5, 0.915 if three else 0.9, sub, ha="center", fontsize=8, color="0.35")

    tmp = f"{out}.tmp.{os.getpid()}"
    codec = (["-c:v", "libx264", "-pix_fmt", "yuv420p", "-movflags", "+faststart", "-f", "mp4"] if ext == ".mp4"
             else ["-vf", "split[a][b];[a]palettegen=stats_mode=full[p];[b][p]paletteuse", "-loop", "0", "-f", "gif"])
    cmd = [ffmpeg, "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgba", "-s", f"{size}x{size}",
           "-r", str(int(fps)), "-i", "-", *codec, tmp]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for k in range(len(frames)):
            cur = coords[k]
            first = max(0, k - trail)
            segs, seg_colors = [], []
            for f in range(first, k):
                segs.append(np.stack([coords[f], coords[f + 1]], axis=1))
                seg_colors.append(colors)
            if segs:
                trails.set_segments(np.concatenate(segs))
                trails.set_color(np.concatenate(seg_colors))
            else:
                trails.set_segments([])
            if three:
                pts._offsets3d = (cur[:, 0], cur[:, 1], cur[:, 2])
                ax.view_init(elev=20, azim=-60 + 120.0 * k / max(len(frames) - 1, 1))
            else:
                pts.set_offsets(cur)
            pts.set_facecolor(colors)
            pts.set_edgecolor("none")
            title.set_text(f"t = {times[k]:.4g}")
            canvas.draw()
            buf = np.asarray(canvas.buffer_rgba())
            if buf.shape[:2] != (size, size):
                raise AnimateError(f"animate: frame is {buf.shape[1]}x{buf.shape[0]}, expected {size}x{size}")
            proc.stdin.write(np.ascontiguousarray(buf).tobytes())
        proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise AnimateError(f"animate: ffmpeg failed (exit {proc.returncode}): {err.strip()}")
        os.replace(tmp, out)
    except BaseException:
        proc.kill()
        proc.wait()
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return {"path": out, "frames": len(frames), "width": size, "height": size, "fps": int(fps)}


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="attnflow animate", description="Render a run's token trajectories as a movie")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, help="movie.mp4 or movie.gif")
    p.add_argument("--fps", type=int, default=10)
    p.add_argument("--size", type=int, default=640, help="width = height in pixels")
    p.add_argument("--max-frames", type=int, default=300)
    p.add_argument("--max-tokens", type=int, default=2000)
    p.add_argument("--system", type=int, default=0)
    p.add_argument("--trail", type=int, default=6)
    a = p.parse_args(argv)
    try:
        r = movie(a.run_dir, a.out, fps=a.fps, size=a.size, max_frames=a.max_frames, max_tokens=a.max_tokens,
                  system=a.system, trail=a.trail)
    except (AnimateError, OSError) as exc:
        print(f"attnflow: error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {r['path']}: {r['frames']} frame{'s' if r['frames'] != 1 else ''}, {r['width']}x{r['height']}, {r['fps']} fps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
