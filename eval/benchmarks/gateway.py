"""Gateway reliability: bad requests under a health probe, a soak of concurrent users, and a
vLLM server killed under load. Each engine behind a real `musicllm serve` process.

    python -m eval.benchmarks.gateway                                   # both engines, all three parts
    python -m eval.benchmarks.gateway --engines transformers --soak-seconds 60 --users 16
    python -m eval.benchmarks.gateway --parts bad-requests --out /tmp/gateway.json

Parts (each engine):
  bad-requests  every case of CORPUS sent one after another while a probe asks /health every
                100 ms: each case's status, code and seconds, the probe's worst latency, and the
                gateway's RSS (its own process, not vLLM's) before and after
  soak          --users concurrent users, each asking about a 5 s clip with audio in a loop for
                --soak-seconds: errors, latency p50/p95, RSS every 5 s (first and last third compared)
  kill-vllm     (vLLM only) the vLLM server is killed (SIGKILL) while requests are in flight: what
                those and the next request get, what /health says, how long until answers return
                (the gateway starts vLLM again), and whether any vLLM process is left after stopping

Numbers are from whatever machine runs this (2 shared cores here): compare the engines side by
side, not against another machine's run.
"""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from eval.benchmarks import benchmark_parser, choose_checkpoint, write_results

DEFAULT_OUT = "eval/benchmarks/results/gateway.json"
MODEL = "musicllm"


def wav(seconds: float) -> bytes:
    from musicllm.audio import test_clip, wav_bytes

    return wav_bytes(test_clip(seconds), 16000)


def flac_claiming(channels: int, rate: int, seconds: float) -> bytes:
    """A tiny FLAC whose STREAMINFO claims `seconds` of audio: what a header says is what the
    size checks read (a real file of silence this long would still compress to a few hundred kB)."""
    import numpy as np
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, np.zeros((rate // 10, channels), dtype=np.float32), rate, format="FLAC", subtype="PCM_16")
    data = bytearray(buffer.getvalue())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    at = 8 + 10  # after the block header and the block/frame size fields: rate(20) channels(3) bps(5) total(36)
    packed = int.from_bytes(data[at:at + 8], "big")
    data[at:at + 8] = ((packed & ~((1 << 36) - 1)) | int(seconds * rate)).to_bytes(8, "big")
    return bytes(data)


def part(data: bytes | str, fmt: str = "wav") -> dict:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return {"type": "input_audio", "input_audio": {"data": encoded, "format": fmt}}


def chat(*parts, text: str = "What is playing?", **extra) -> dict:
    return {"model": MODEL, "max_tokens": 8, "messages": [{"role": "user", "content": [*parts, {"type": "text",
                                                                                            "text": text}]}]} | extra


def corpus() -> dict[str, tuple[str, bytes | dict]]:
    """name -> (route, JSON body or raw bytes). Everything a client or an attacker has sent."""
    clip = wav(2.0)
    return {
        "text 20 MB": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "la " * 7_000_000}]}),
        "text 60 MB": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": "la " * 20_000_000}]}),
        "body over the 80 MiB limit": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user",
                                                                                              "content": "x" * 85_000_000}]}),
        "JSON nested 100,000 deep": ("/v1/chat/completions", b"[" * 100_000 + b"]" * 100_000),
        "not JSON": ("/v1/chat/completions", b"{not json"),
        "JSON array": ("/v1/chat/completions", b"[1, 2]"),
        "FLAC 4 ch 96 kHz 590 s": ("/v1/chat/completions", chat(part(flac_claiming(4, 96000, 590), "flac"))),
        "FLAC 8 ch 192 kHz 590 s": ("/v1/chat/completions", chat(part(flac_claiming(8, 192000, 590), "flac"))),
        "corrupt WAV": ("/v1/chat/completions", chat(part(b"RIFF" + bytes(300)))),
        "text sent as mp3": ("/v1/chat/completions", chat(part(b"hello, world! " * 30, "mp3"))),
        "empty audio data": ("/v1/chat/completions", chat(part(""))),
        "audio data a number": ("/v1/chat/completions", chat({"type": "input_audio", "input_audio": {"data": 12345,
                                                                                                     "format": "wav"}})),
        "unsupported format": ("/v1/chat/completions", chat(part(clip, "aac"))),
        "not base64": ("/v1/chat/completions", chat(part("not base64!!"))),
        "clip over 25 MiB": ("/v1/chat/completions", chat(part(bytes(26 * 1024 * 1024)))),
        "clip over 600 s": ("/v1/chat/completions", chat(part(flac_claiming(1, 8000, 700), "flac"))),
        "9 clips": ("/v1/chat/completions", chat(*[part(clip)] * 9)),
        "audio_url": ("/v1/chat/completions", chat({"type": "audio_url", "audio_url": {"url": "file:///etc/passwd"}})),
        "image": ("/v1/chat/completions", chat({"type": "image_url", "image_url": {"url": "http://127.0.0.1/x.png"}})),
        "unknown model": ("/v1/chat/completions", chat(part(clip)) | {"model": "gpt-4o"}),
        "no messages": ("/v1/chat/completions", {"model": MODEL}),
        "empty content": ("/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": []}]}),
        "max_tokens 100000": ("/v1/chat/completions", chat(part(clip), max_tokens=100_000)),
        "prompt longer than the context": ("/v1/chat/completions", {"model": MODEL, "messages": [
            {"role": "user", "content": "piano " * 30_000}]}),
        "recommend query 2 MB": ("/v1/recommend", {"query": "calm piano " * 200_000}),
        "recommend unknown track": ("/v1/recommend", {"track": "x"}),
    }


class Gateway:
    """`musicllm serve` in a subprocess (its own process group), until stop()."""

    def __init__(self, checkpoint: Path, engine: str, threads: int, workdir: Path):
        from musicllm.vllm_server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = workdir / f"gateway-{engine}.log"
        command = [sys.executable, "-m", "musicllm.cli", "serve", "--checkpoint", str(checkpoint), "--engine", engine,
                   "--port", str(self.port), "--threads", str(threads)]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, "OMP_NUM_THREADS": str(threads)})

    def wait(self, timeout: float = 600.0) -> float:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"the gateway exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"the gateway was not healthy after {timeout:.0f} s")

    def rss_mb(self) -> float:
        import psutil

        return psutil.Process(self.process.pid).memory_info().rss / 2**20

    def vllm_servers(self) -> list:
        import psutil

        found = []
        for child in psutil.Process(self.process.pid).children(recursive=True):
            try:
                if "vllm.entrypoints.openai.api_server" in " ".join(child.cmdline()):
                    found.append(child)
            except psutil.Error:
                pass
        return found

    def stop(self) -> bool:
        """Ctrl-C, as a user would; True when nothing it started is left."""
        import psutil

        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        time.sleep(1)
        return not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]


class Probe:
    """GET /health every `every` seconds in a thread; the latencies, until stop()."""

    def __init__(self, url: str, every: float = 0.1):
        self.url, self.every, self.latencies, self.failures = url, every, [], 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=30) as client:
            while not self.done.is_set():
                started = time.perf_counter()
                try:
                    client.get(f"{self.url}/health")
                except httpx.HTTPError:
                    self.failures += 1
                self.latencies.append(time.perf_counter() - started)
                self.done.wait(self.every)

    def stop(self) -> dict:
        self.done.set()
        self.thread.join()
        ordered = sorted(self.latencies)
        return dict(probes=len(ordered), worst_s=round(ordered[-1], 3), p95_s=round(ordered[int(0.95 * (len(ordered) - 1))], 3),
                    failures=self.failures)


def send(url: str, route: str, body) -> dict:
    import httpx

    started = time.perf_counter()
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    try:
        response = httpx.post(f"{url}{route}", content=content, headers={"content-type": "application/json"},
                              timeout=300)
        status, text = response.status_code, response.text
    except httpx.HTTPError as err:
        status, text = None, f"{type(err).__name__}: {err}"
    seconds = time.perf_counter() - started
    try:
        error = json.loads(text)["error"]
    except (ValueError, KeyError, TypeError):
        error = {"message": text[:300]}
    return dict(status=status, seconds=round(seconds, 3), code=error.get("code"), message=str(error.get("message"))[:300])


def bad_requests(gateway: Gateway) -> dict:
    import gc

    gc.collect()
    before = gateway.rss_mb()
    probe = Probe(gateway.url)
    cases, peak = {}, before
    for name, (route, body) in corpus().items():
        cases[name] = send(gateway.url, route, body)
        peak = max(peak, gateway.rss_mb())
        print(f"  {name:34} {cases[name]['status']} {cases[name]['code']} {cases[name]['seconds']:.2f} s", flush=True)
    probed = probe.stop()
    time.sleep(3)
    after = gateway.rss_mb()
    four_xx = [c for c in cases.values() if c["status"] is not None and 400 <= c["status"] < 500]
    return dict(cases=cases, all_4xx=len(four_xx) == len(cases), slowest_case_s=max(c["seconds"] for c in cases.values()),
                probe=probed, rss_mb_before=round(before, 1), rss_mb_peak=round(peak, 1), rss_mb_after=round(after, 1),
                rss_growth_mb=round(after - before, 1))


def soak(gateway: Gateway, users: int, seconds: float) -> dict:
    import httpx

    body = chat(part(wav(5.0)), max_tokens=16)
    deadline = time.monotonic() + seconds
    latencies, errors, memory = [], [], []

    def user(number: int) -> None:
        with httpx.Client(timeout=300) as client:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    response = client.post(f"{gateway.url}/v1/chat/completions", json=body)
                    ok = response.status_code == 200
                    detail = response.text[:200]
                except httpx.HTTPError as err:
                    ok, detail = False, f"{type(err).__name__}: {err}"
                (latencies if ok else errors).append(time.perf_counter() - started if ok else detail)

    def watch() -> None:
        while time.monotonic() < deadline:
            memory.append(gateway.rss_mb())
            time.sleep(5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(users) as pool:
        list(pool.map(user, range(users)))
    watcher.join()
    ordered = sorted(latencies)
    third = max(len(memory) // 3, 1)
    return dict(users=users, seconds=seconds, requests=len(latencies) + len(errors), errors=len(errors),
                error_examples=errors[:3], p50_s=round(statistics.median(ordered), 3) if ordered else None,
                p95_s=round(ordered[int(0.95 * (len(ordered) - 1))], 3) if ordered else None,
                rss_mb_first_third=round(statistics.mean(memory[:third]), 1),
                rss_mb_last_third=round(statistics.mean(memory[-third:]), 1), rss_mb_samples=[round(m) for m in memory])


def kill_vllm(gateway: Gateway, users: int = 4) -> dict:
    import httpx

    body = chat(part(wav(5.0)), max_tokens=48)
    (server,) = gateway.vllm_servers()
    with ThreadPoolExecutor(users) as pool:
        in_flight = [pool.submit(send, gateway.url, "/v1/chat/completions", body) for _ in range(users)]
        time.sleep(1.0)
        killed_at = time.monotonic()
        server.kill()
        during = [f.result() for f in in_flight]
    after_kill = send(gateway.url, "/v1/chat/completions", body)
    health = httpx.get(f"{gateway.url}/health", timeout=30)
    while time.monotonic() - killed_at < 600:
        if httpx.get(f"{gateway.url}/health", timeout=30).status_code == 200:
            break
        time.sleep(1)
    recovered_s = time.monotonic() - killed_at
    answered = send(gateway.url, "/v1/chat/completions", body)
    return dict(in_flight=during, next_request=after_kill, health_status=health.status_code, health=health.json(),
                recovered_after_s=round(recovered_s, 1), answer_after_recovery=answered)


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__, DEFAULT_OUT, ["vllm", "transformers"])
    parser.add_argument("--parts", nargs="+", default=["bad-requests", "soak", "kill-vllm"],
                        choices=["bad-requests", "soak", "kill-vllm"], help="what to measure")
    parser.add_argument("--users", type=int, default=64, help="concurrent users in the soak")
    parser.add_argument("--soak-seconds", type=float, default=180.0, help="how long the soak lasts, per engine")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="musicllm-gateway-") as tmp:
        workdir = Path(tmp)
        checkpoint, model = choose_checkpoint(args.checkpoint, workdir)
        print(f"checkpoint: {checkpoint} ({model})", flush=True)
        results = {}
        for engine in args.engines:
            gateway = Gateway(checkpoint, engine, args.threads, workdir)
            result = results[engine] = {}
            try:
                result["start_s"] = round(gateway.wait(), 1)
                if "bad-requests" in args.parts:
                    print(f"{engine}: bad requests", flush=True)
                    result["bad_requests"] = bad_requests(gateway)
                if "soak" in args.parts:
                    print(f"{engine}: soak, {args.users} users for {args.soak_seconds:g} s", flush=True)
                    result["soak"] = soak(gateway, args.users, args.soak_seconds)
                if "kill-vllm" in args.parts and engine == "vllm":
                    print(f"{engine}: killing vLLM under load", flush=True)
                    result["kill_vllm"] = kill_vllm(gateway)
            finally:
                result["stopped_cleanly"] = gateway.stop()
            print(f"{engine}: {json.dumps({k: v for k, v in result.items() if k != 'bad_requests'})[:2000]}", flush=True)
    report = dict(benchmark="gateway", model=model, checkpoint=str(checkpoint), threads=args.threads,
                  cpu_count=os.cpu_count(), load_average=os.getloadavg(), results=results)
    write_results(report, args.out)


if __name__ == "__main__":
    main()
