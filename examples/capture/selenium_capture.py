#!/usr/bin/env python3
"""recfleet external capture child: Selenium drives Chromium, ffmpeg records the slot.

THE CONTRACT (between the recfleet worker and an external capture command)

The worker prepares a slot (an Xvfb display, a PulseAudio server with a null
sink, a fresh profile directory), starts this command inside it, in its own
process group, and reads JSON lines from its stdout.

Environment given by the worker:
  DISPLAY                 the slot's X display, e.g. ":101"
  PULSE_SERVER            the slot's PulseAudio server, "unix:/path/to/socket"
  PULSE_SINK              the null sink's name; Chromium plays into it
  RECFLEET_AUDIO_SOURCE   the sink's monitor source, e.g. "rec101.monitor"
                          (default: "$PULSE_SINK.monitor")
  RECFLEET_URL            the page to record (http/https)
  RECFLEET_OUTPUT         the file to write: fragmented MP4
  RECFLEET_WIDTH          viewport / capture width in pixels (default 1280)
  RECFLEET_HEIGHT         viewport / capture height in pixels (default 720)
  RECFLEET_FPS            capture frame rate (default 15)
  RECFLEET_AUDIO          "1" to record the sink's monitor, "0" for video only (default 1)
  RECFLEET_RECORDING_ID   the recording's id (for logs)
  RECFLEET_EPOCH          the segment's epoch (for logs)
  RECFLEET_PROFILE_DIR    a fresh empty directory for the browser profile
  RECFLEET_CHROMEDRIVER   chromedriver path (default /usr/bin/chromedriver)
  RECFLEET_CHROMIUM       chromium path (default /usr/bin/chromium)

Stdout: one JSON object per line, flushed after each line. Nothing else is
ever written to stdout (logs, ffmpeg and chromedriver output go to stderr).
  {"event":"ready"}
      once, when the page is open and ffmpeg has captured its first frame.
  {"event":"progress","frames":N,"out_time_ms":N,"bytes":N}
      about every second: frames encoded so far, media time written in
      milliseconds (ffmpeg's own "out_time_ms" key is in microseconds; it is
      converted here), and the size of the output file in bytes.
  {"event":"error","message":"..."}
      on a fatal error (ffmpeg died, the browser died or stopped answering,
      the page could not be opened ...); the command then cleans up and exits
      non-zero. The output file, if any, is still a playable fragmented MP4.
  {"event":"done","file":"...","bytes":N}
      after a clean stop: ffmpeg has finalized the file; then exit 0.
      (A stop requested before capture began gives bytes 0 or the partial size.)

Stop: the worker sends SIGTERM (or SIGINT) to this process. The command then
stops ffmpeg gracefully ("q" on its stdin, then SIGINT, SIGKILL as last
resort), waits for it, quits the browser, prints "done" and exits 0, all
within 10 s. After that the worker may SIGKILL the whole process group.
Stdin is not used and may be closed. If stdout is closed (the worker went
away), the command stops as if it had received SIGTERM.
"""

import collections
import json
import os
import signal
import subprocess
import sys
import threading
import time

# Never let Selenium Manager go to the network: the driver path is always given.
os.environ["SE_OFFLINE"] = "true"
os.environ.pop("SE_CHROMEDRIVER", None)  # would override Service(executable_path=...)

# Keep the real stdout for events only; anything else writing to fd 1
# (this process or a child that inherits it) lands on stderr instead.
_events = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr

from selenium import webdriver  # noqa: E402  (after the fd shuffle on purpose)
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402

STOP_DEADLINE = 10.0      # the contract: done within 10 s of SIGTERM
FFMPEG_STOP_WAIT = 5.0    # of which at most this long for ffmpeg to finalize
QUIT_WAIT = 2.5           # and this long for driver.quit()
HEALTH_PERIOD = 2.0       # how often the browser is asked whether it is alive
HEALTH_TIMEOUT = 15.0     # no answer for this long = browser hung
READY_TIMEOUT = 20.0      # ffmpeg must produce a first frame within this

_stop = threading.Event()      # SIGTERM/SIGINT or stdout gone
_fatal = []                    # first fatal error message
_fatal_ev = threading.Event()
_out_lock = threading.Lock()
_stdout_ok = True
_closed = False                # "error" or "done" was printed: nothing may follow


def log(msg):
    print("selenium_capture: " + msg, file=sys.stderr, flush=True)


def emit(obj):
    """One JSON object per line on the real stdout. A closed stdout = stop."""
    global _stdout_ok, _closed
    with _out_lock:
        if not _stdout_ok or _closed:
            return
        if obj.get("event") in ("error", "done"):
            _closed = True
        try:
            _events.write(json.dumps(obj, separators=(",", ":")) + "\n")
            _events.flush()
        except (BrokenPipeError, OSError):
            _stdout_ok = False
            _stop.set()


def fail(message):
    if not _fatal:
        _fatal.append(message)
    _fatal_ev.set()


_signal_seen = []


def on_signal(signum, _frame):
    # Only set flags here: printing from a signal handler can hit a reentrant write.
    _signal_seen.append(signum)
    _stop.set()


class Stopped(Exception):
    """A stop was requested while waiting for something."""


def interruptible(fn, timeout, what):
    """Run fn() in a thread; return its result. Raises Stopped on a stop request,
    RuntimeError when it takes longer than timeout, or fn's own exception."""
    box = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: B036  handed over to the caller
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    deadline = time.monotonic() + timeout
    while t.is_alive():
        if _stop.is_set():
            raise Stopped()
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} took more than {timeout:.0f} s")
        t.join(0.05)
    if "error" in box:
        raise box["error"]
    return box.get("value")


def kill_leftovers():
    """SIGKILL what is left of our children (chromedriver, Chromium, ffmpeg).
    As process group leader: every other member of our group (this catches
    Chromium orphaned by a dead chromedriver). Otherwise: our descendants."""
    me = os.getpid()
    leader = os.getpgrp() == me
    procs = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            procs[int(d)] = (int(fields[1]), int(fields[2]), fields[0])  # ppid, pgrp, state
        except (OSError, IndexError, ValueError):
            continue
    if leader:
        victims = [p for p, (_, pg, st) in procs.items() if pg == me and p != me and st != "Z"]
    else:
        victims, todo = [], [me]
        while todo:
            parent = todo.pop()
            for p, (pp, _, st) in procs.items():
                if pp == parent:
                    todo.append(p)
                    if st != "Z":
                        victims.append(p)
    for p in victims:
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if victims:
        log(f"killed {len(victims)} leftover process(es)")


def env(name, default=None, required=False):
    v = os.environ.get(name, "")
    if v == "":
        if required:
            raise ValueError(f"environment variable {name} is required")
        return default
    return v


def file_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


class Config:
    def __init__(self):
        self.display = env("DISPLAY", required=True)
        self.url = env("RECFLEET_URL", required=True)
        self.output = env("RECFLEET_OUTPUT", required=True)
        self.width = int(env("RECFLEET_WIDTH", "1280"))
        self.height = int(env("RECFLEET_HEIGHT", "720"))
        self.fps = env("RECFLEET_FPS", "15")
        float(self.fps)  # validate
        self.audio = env("RECFLEET_AUDIO", "1") == "1"
        sink = env("PULSE_SINK", "")
        self.audio_source = env("RECFLEET_AUDIO_SOURCE", f"{sink}.monitor" if sink else None)
        if self.audio:
            env("PULSE_SERVER", required=True)
            if not self.audio_source:
                raise ValueError("RECFLEET_AUDIO_SOURCE (or PULSE_SINK) is required when RECFLEET_AUDIO=1")
        self.profile_dir = env("RECFLEET_PROFILE_DIR", required=True)
        self.chromedriver = env("RECFLEET_CHROMEDRIVER", "/usr/bin/chromedriver")
        self.chromium = env("RECFLEET_CHROMIUM", "/usr/bin/chromium")
        self.recording_id = env("RECFLEET_RECORDING_ID", "-")
        self.epoch = env("RECFLEET_EPOCH", "-")
        if self.width <= 0 or self.height <= 0 or self.width % 2 or self.height % 2:
            raise ValueError("RECFLEET_WIDTH and RECFLEET_HEIGHT must be positive and even")
        if not os.path.isfile(self.chromedriver):
            raise ValueError(f"chromedriver not found at {self.chromedriver}")
        if not os.path.isfile(self.chromium):
            raise ValueError(f"chromium not found at {self.chromium}")


def make_service(cfg):
    # chromedriver (and Chromium, which inherits its stdout/stderr) log to our stderr.
    return Service(executable_path=cfg.chromedriver, log_output=sys.stderr, env=dict(os.environ))


def start_browser(cfg, service):
    opts = webdriver.ChromeOptions()
    opts.binary_location = cfg.chromium
    args = []
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    args += [
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-features=Translate,MediaRouter,OptimizationHints,DialMediaRouteProvider",
        "--password-store=basic",
        "--window-position=0,0",
        f"--window-size={cfg.width},{cfg.height}",
        f"--user-data-dir={cfg.profile_dir}",
        "--kiosk",
    ]
    # The worker's egress proxy for this part: every request of the page
    # goes through it, where the coordinator's URL policy is enforced.
    proxy = os.environ.get("RECFLEET_PROXY")
    if proxy:
        args += [f"--proxy-server={proxy}", "--proxy-bypass-list=<-loopback>"]
    for a in args:
        opts.add_argument(a)
    opts.add_experimental_option("excludeSwitches", ["enable-automation"])
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(30)
    return driver


# Harmless ffmpeg warnings, left out of error messages (still logged to stderr).
_FFMPEG_NOISE = ("not enough frames to estimate rate", "Guessed Channel Layout", "frames left in the queue")


def ffmpeg_command(cfg):
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "warning", "-nostats", "-y",
           "-thread_queue_size", "1024", "-f", "x11grab", "-draw_mouse", "0",
           "-framerate", str(cfg.fps), "-video_size", f"{cfg.width}x{cfg.height}",
           "-i", f"{cfg.display}.0+0,0" if "." not in cfg.display.rsplit(":", 1)[-1] else f"{cfg.display}+0,0"]
    if cfg.audio:
        cmd += ["-thread_queue_size", "1024", "-f", "pulse", "-sample_rate", "48000", "-channels", "2",
                "-i", cfg.audio_source]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-crf", "26", "-g", "30"]
    if cfg.audio:
        cmd += ["-c:a", "aac", "-b:a", "128k"]
    # -xerror: exit (and finalize the file) when an input fails, e.g. the PulseAudio
    # server died; without it ffmpeg goes on with video only and looks healthy.
    cmd += ["-xerror", "-flush_packets", "1", "-frag_duration", "1000000",
            "-movflags", "+frag_keyframe+empty_moov+default_base_moof",
            "-progress", "pipe:1", "-f", "mp4", cfg.output]
    return cmd


class Ffmpeg:
    def __init__(self, cfg):
        self.cfg = cfg
        self.first_frame = threading.Event()
        self.exited = threading.Event()
        self.tail = collections.deque(maxlen=8)
        cmd = ffmpeg_command(cfg)
        log("ffmpeg: " + " ".join(cmd))
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        threading.Thread(target=self._read_progress, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_progress(self):
        block, last_emit = {}, 0.0
        for line in self.proc.stdout:
            key, _, value = line.strip().partition("=")
            block[key] = value
            if key != "progress":
                continue
            try:
                frames = int(block.get("frame", "0"))
            except ValueError:
                frames = 0
            if frames > 0 and not self.first_frame.is_set():
                emit({"event": "ready"})  # from this thread, so that it precedes every progress line
                self.first_frame.set()
            now = time.monotonic()
            if self.first_frame.is_set() and (now - last_emit >= 0.95 or value == "end"):
                last_emit = now
                try:
                    out_us = int(block.get("out_time_us", block.get("out_time_ms", "0")))
                except ValueError:
                    out_us = 0
                emit({"event": "progress", "frames": frames, "out_time_ms": max(0, out_us) // 1000,
                      "bytes": file_size(self.cfg.output)})
            block = {}
        self.proc.wait()
        self.exited.set()

    def _read_stderr(self):
        for line in self.proc.stderr:
            line = line.rstrip("\n")
            if not any(n in line for n in _FFMPEG_NOISE):
                self.tail.append(line)
            print("ffmpeg: " + line, file=sys.stderr, flush=True)

    def stop(self, wait):
        """Graceful stop: 'q' on stdin, then SIGINT, then SIGKILL."""
        p = self.proc
        if p.poll() is not None:
            return p.returncode
        deadline = time.monotonic() + wait
        try:
            p.stdin.write("q\n")
            p.stdin.flush()
            p.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        for sig, share in ((None, 0.5), (signal.SIGINT, 1.0)):
            if sig is not None:
                try:
                    p.send_signal(sig)
                except ProcessLookupError:
                    pass
            try:
                return p.wait(timeout=max(0.1, (deadline - time.monotonic()) * share))
            except subprocess.TimeoutExpired:
                pass
        log("ffmpeg did not stop in time, killing it (the fragmented MP4 stays playable)")
        p.kill()
        return p.wait()


def health_loop(driver, last_ok):
    """Ask the browser every HEALTH_PERIOD s whether it is alive (runs in a thread)."""
    while not _stop.is_set() and not _fatal_ev.is_set():
        try:
            driver.execute_script("return document.readyState")
            last_ok[0] = time.monotonic()
        except WebDriverException as e:
            if not _stop.is_set():
                fail("browser is gone: " + str(e).strip().splitlines()[0][:300])
            return
        except Exception as e:  # connection refused: chromedriver died
            if not _stop.is_set():
                fail(f"chromedriver is gone: {type(e).__name__}: {e}"[:300])
            return
        _stop.wait(HEALTH_PERIOD)


def quit_browser(driver, wait):
    """driver.quit() with a deadline; kill chromedriver and Chromium if it overruns."""
    if driver is None:
        return
    try:
        browser_pid = int(driver.capabilities.get("goog:processID") or 0)
    except (TypeError, ValueError):
        browser_pid = 0
    t = threading.Thread(target=driver.quit, daemon=True)
    t.start()
    t.join(wait)
    if t.is_alive():
        log("driver.quit() overran, killing chromedriver and the browser")
        for pid in (browser_pid, getattr(getattr(driver.service, "process", None), "pid", 0)):
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass


def main():
    t_start = time.monotonic()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    try:
        cfg = Config()
    except ValueError as e:
        emit({"event": "error", "message": str(e)})
        return 2
    log(f"recording {cfg.recording_id} epoch {cfg.epoch}: {cfg.url} -> {cfg.output} "
        f"({cfg.width}x{cfg.height}@{cfg.fps}, audio {'on' if cfg.audio else 'off'})")

    driver, ff, stop_t = None, None, None
    service = make_service(cfg)
    try:
        # 1. browser and page (both abandoned at once on a stop request)
        try:
            driver = interruptible(lambda: start_browser(cfg, service), 60, "starting the browser")
            log(f"browser up after {time.monotonic() - t_start:.2f} s")
            try:
                interruptible(lambda: driver.get(cfg.url), 40, "opening the page")
            except TimeoutException:
                log("page load timed out after 30 s; recording what is shown")
            except WebDriverException as e:
                raise RuntimeError("could not open the page: " + str(e).strip().splitlines()[0][:300])
            log(f"page loaded after {time.monotonic() - t_start:.2f} s")
        except Stopped:
            log("stop requested during start-up")
        except (RuntimeError, WebDriverException, OSError) as e:
            if driver is None:
                raise RuntimeError(f"could not start the browser: {type(e).__name__}: {e}".splitlines()[0][:400])
            raise

        # 2. capture
        if not _stop.is_set():
            ff = Ffmpeg(cfg)
            deadline = time.monotonic() + READY_TIMEOUT
            while not ff.first_frame.wait(0.05):
                if ff.exited.is_set():
                    raise RuntimeError("ffmpeg exited before the first frame: " + " | ".join(ff.tail))
                if _stop.is_set():
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"ffmpeg produced no frame within {READY_TIMEOUT:.0f} s")
            if ff.first_frame.is_set():
                log(f"ready after {time.monotonic() - t_start:.2f} s")

        # 3. record until stopped or broken
        last_ok = [time.monotonic()]
        if not _stop.is_set():
            threading.Thread(target=health_loop, args=(driver, last_ok), daemon=True).start()
        while not _stop.is_set():
            if _fatal_ev.is_set():
                raise RuntimeError(_fatal[0])
            if ff.exited.is_set():
                raise RuntimeError(f"ffmpeg exited unexpectedly (code {ff.proc.returncode}): "
                                   + " | ".join(ff.tail))
            if time.monotonic() - last_ok[0] > HEALTH_TIMEOUT:
                raise RuntimeError(f"browser has not answered for {HEALTH_TIMEOUT:.0f} s")
            _stop.wait(0.2)

        # 4. clean stop
        stop_t = time.monotonic()
        if _signal_seen:
            log(f"got signal {_signal_seen[0]}, stopping")
        elif not _stdout_ok:
            log("stdout closed, stopping")
        if ff is not None:
            rc = ff.stop(FFMPEG_STOP_WAIT)
            log(f"ffmpeg stopped (code {rc}) after {time.monotonic() - stop_t:.2f} s")
            ff.exited.wait(1.0)  # let the progress reader emit its last line
        quit_browser(driver, min(QUIT_WAIT, max(0.5, STOP_DEADLINE - 1.0 - (time.monotonic() - stop_t))))
        driver = None
        kill_leftovers()
        emit({"event": "done", "file": cfg.output, "bytes": file_size(cfg.output) if ff is not None else 0})
        log(f"done, stop took {time.monotonic() - stop_t:.2f} s")
        return 0
    except Exception as e:
        msg = str(e) or type(e).__name__
        log("fatal: " + msg)
        emit({"event": "error", "message": msg})
        if ff is not None:
            ff.stop(FFMPEG_STOP_WAIT)
        quit_browser(driver, QUIT_WAIT)
        kill_leftovers()
        return 1


if __name__ == "__main__":
    sys.exit(main())
