"""Redis at REDIS_URL: used if it answers PING, else a redis-server of the checkout's own (AOF on, in .local/redis)."""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import time
from dataclasses import replace

from .common import LOGS, REDIS_DIR, DevError, have, is_loopback, proc_name, read_pid, say, show_tail, tcp_open
from .urls import ServerUrl, parse


def _command(*words: str) -> bytes:
    encoded = [w.encode() for w in words]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(w), w) for w in encoded)


def ping(url: ServerUrl) -> str:
    """The server's reply to PING (``PONG`` when usable), after AUTH if the URL has a password.

    Spoken in RESP over a socket, so that neither redis-cli nor a client library is needed."""
    try:
        with socket.create_connection((url.host.strip("[]"), url.port), timeout=3) as raw:
            conn = ssl.create_default_context().wrap_socket(raw, server_hostname=url.host) \
                if url.scheme == "rediss" else raw
            reader = conn.makefile("rb")
            if url.password:
                auth = ("AUTH", url.user, url.password) if url.user and url.user != "default" else ("AUTH", url.password)
                conn.sendall(_command(*auth))
                reply = reader.readline().decode(errors="replace").strip()
                if not reply.startswith("+"):
                    return reply.lstrip("-") or "no reply"
            conn.sendall(_command("PING"))
            return reader.readline().decode(errors="replace").strip().lstrip("+-") or "no reply"
    except (OSError, ssl.SSLError) as exc:
        return f"not reachable: {exc}"


def ensure_redis() -> ServerUrl:
    url = parse("REDIS_URL", os.environ["REDIS_URL"], 6379)
    if not url.host:
        url = replace(url, host="127.0.0.1")
    addr = f"{url.host}:{url.port}"
    reply = ping(url)
    if reply == "PONG":
        say(f"redis: using {addr}")
        return url
    if not is_loopback(url.host):
        raise DevError(f"redis: {addr} does not answer PING ({reply}; REDIS_URL={url.show}); "
                       "./dev only starts Redis on a loopback address")
    if tcp_open(url.host, url.port):
        raise DevError(f"redis: something listens on {addr} but PING answered: {reply} (check REDIS_URL={url.show})")
    if not have("redis-server"):
        raise DevError(f"redis: nothing answers on {addr} and redis-server is not installed: "
                       "sudo apt-get install redis-server")

    pidfile = REDIS_DIR / "redis.pid"
    pid = read_pid(pidfile)
    if pid and proc_name(pid).startswith("redis-server"):
        raise DevError(f"redis: the Redis started by ./dev (pid {pid}) runs on another port than {url.port}; "
                       "run ./dev down first")
    pidfile.unlink(missing_ok=True)
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    bind = "127.0.0.1" if url.host == "localhost" else url.host.strip("[]")
    args = ["--port", str(url.port), "--bind", bind, "--daemonize", "yes", "--dir", str(REDIS_DIR),
            "--appendonly", "yes", "--pidfile", str(pidfile), "--logfile", str(REDIS_DIR / "redis.log")]
    if url.password:
        # The URL's password goes in a private config file, never on a command line (ps shows those).
        conf = REDIS_DIR / "auth.conf"
        fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as out:
            if url.user and url.user != "default":
                out.write(f"user {url.user} on >{url.password} ~* &* +@all\n")
            else:
                out.write(f"requirepass {url.password}\n")
        args = [str(conf), *args]
    with open(LOGS / "redis-start.log", "ab") as log:
        started = subprocess.run(["redis-server", *args], stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
    if started.returncode != 0:
        show_tail(LOGS / "redis-start.log", 5)
        raise DevError("redis: redis-server failed to start; see .local/redis/redis.log")
    deadline = time.monotonic() + 10
    while ping(url) != "PONG":
        if time.monotonic() > deadline:
            show_tail(REDIS_DIR / "redis.log", 10)
            raise DevError(f"redis: started but does not answer on {addr}; see .local/redis/redis.log")
        time.sleep(0.2)
    say(f"redis: started {addr} (pid {read_pid(pidfile) or '?'}, data in .local/redis, AOF on)")
    return url
