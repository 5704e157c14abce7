"""attnflow animate: the movie has one frame per snapshot at the requested size (ffprobe counts the
decoded frames), mp4 and gif, its pictures change over time (decoded first and last frames
differ); bad arguments are named; attnflow demo leaves view.html and movie.mp4 beside its plots."""
import json
import subprocess

import numpy as np

RUN = """
[measure]
n = 30
d = 3
seed = 2
[model]
kind = "sa"
beta = 6.0
[integrate]
method = "euler"
dt = 0.1
t_end = 3.0
[observe]
every = 0.25
delta = 0.05
"""


def probe(path):
    """Frame count (decoded), width, height and codec by ffprobe."""
    r = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                        "stream=nb_read_frames,width,height,codec_name", "-of", "json", str(path)],
                       capture_output=True, text=True, check=True)
    s = json.loads(r.stdout)["streams"][0]
    return int(s["nb_read_frames"]), int(s["width"]), int(s["height"]), s["codec_name"]


def frame(path, k, size):
    """Decoded frame k as an RGB array."""
    r = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"select=eq(n\\,{k})", "-vframes", "1",
                        "-f", "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True)
    return np.frombuffer(r.stdout, dtype=np.uint8).reshape(size, size, 3).astype(float) / 255


def make_run(run_cli, tmp_path, sets=()):
    cfg = tmp_path / "a.toml"
    cfg.write_text(RUN)
    out = tmp_path / "run"
    args = ["run", cfg, "--out", out, "--no-plots", "--quiet"]
    for s in sets:
        args += ["--set", s]
    assert run_cli(*args).returncode == 0
    return out


def test_animate_mp4_has_a_frame_per_snapshot_at_the_size(run_cli, tmp_path):
    run = make_run(run_cli, tmp_path)
    snaps = len(list((run / "snapshots").glob("snap_*.npy")))
    assert snaps == 13
    out = tmp_path / "movie.mp4"
    r = run_cli("animate", run, "--out", out, "--fps", "6", "--size", "240")
    assert r.returncode == 0, r.stderr
    assert f"{snaps} frames, 240x240, 6 fps" in r.stdout
    assert probe(out) == (snaps, 240, 240, "h264")
    first, last = frame(out, 0, 240), frame(out, snaps - 1, 240)
    assert first.std() > 0.02 and last.std() > 0.02
    assert np.mean(np.abs(first - last).max(axis=2) > 0.2) > 0.002  # the tokens moved


def test_animate_gif_and_frame_cap(run_cli, tmp_path):
    run = make_run(run_cli, tmp_path, sets=["measure.d=2"])
    out = tmp_path / "movie.gif"
    r = run_cli("animate", run, "--out", out, "--fps", "5", "--size", "160", "--max-frames", "7")
    assert r.returncode == 0, r.stderr
    assert probe(out) == (7, 160, 160, "gif")


def test_animate_errors_name_the_argument(run_cli, tmp_path):
    run = make_run(run_cli, tmp_path)
    r = run_cli("animate", run, "--out", tmp_path / "movie.avi")
    assert r.returncode != 0 and "--out" in r.stderr and "must end in .mp4 or .gif" in r.stderr
    assert not (tmp_path / "movie.avi").exists()
    r = run_cli("animate", run, "--out", tmp_path / "m.mp4", "--system", "1")
    assert r.returncode != 0 and "system = 1, must be < 1" in r.stderr
    r = run_cli("animate", run, "--out", tmp_path / "m.mp4", "--fps", "0")
    assert r.returncode != 0 and "--fps" in r.stderr
    assert list(tmp_path.glob("m.mp4*")) == []


def test_demo_writes_the_viewer_and_a_movie_beside_its_plots(run_cli, tmp_path):
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", out)
    assert r.returncode == 0, r.stderr
    assert (out / "trajectories.png").exists() and (out / "view.html").exists()
    frames, w, h, codec = probe(out / "movie.mp4")
    snaps = len(list((out / "snapshots").glob("snap_*.npy")))
    assert (frames, w, h, codec) == (snaps, 480, 480, "h264")
    assert "view.html" in r.stdout and "movie.mp4" in r.stdout
