"""Take the README's screenshot of the dashboard's overview, on seeded demo data.

    .venv/bin/python -m bench.dashboard_screenshot [--out docs/dashboard-overview.png] [--rows 200000]

Seeds a throwaway database (bench.sandbox, harness.seed: a month of syncs ending now), serves the
dashboard with gunicorn on a free loopback port, opens it in Debian's headless Chromium
(``/usr/bin/chromium``, ``/usr/bin/chromedriver``) and saves a full-page PNG of the overview
(or of ``--path``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench import sandbox
from harness.ports import free_port

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard-overview.png"))
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--path", default="/")
    parser.add_argument("--range", default="24 h", help="label of the time range to pick")
    parser.add_argument("--width", type=int, default=1440)
    args = parser.parse_args()

    with sandbox.enter(LOG_LEVEL="WARNING"):
        import psycopg
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        from selenium.webdriver.common.by import By

        from harness import seed

        with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
            seed.load_everything(conn, rows=args.rows, users=args.users, end=dt.datetime.now(dt.timezone.utc),
                                 days=30)
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "dashboard.app:server", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "8"], cwd=ROOT, env=os.environ, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        driver = None
        try:
            url = f"http://127.0.0.1:{port}{args.path}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            options = webdriver.ChromeOptions()
            options.binary_location = "/usr/bin/chromium"
            for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--hide-scrollbars", f"--window-size={args.width},1000"):
                options.add_argument(flag)
            driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
            driver.get(url)
            time.sleep(2)
            driver.find_element(By.XPATH, f"//*[@id='time-range']//label[normalize-space()='{args.range}']").click()
            time.sleep(6)  # every callback answered and every chart drawn
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(args.width, height + 20)
            time.sleep(2)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(args.out)
            print(f"saved {args.out} ({args.width}x{height})")
        finally:
            if driver is not None:
                driver.quit()
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
