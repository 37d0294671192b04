#!/usr/bin/env python3
"""End-to-end tests of `--html FILE`: the self-contained page with the flame
graph of open handles and the handle table, for `htrace run` (with -f too)
and the commands on a running process.  The page is loaded in a real
headless browser (Debian's chromium): its DOM is dumped to check that the
script built the table and the flame graph, and a screenshot is decoded to
check that something was drawn.

The victim is tests/victims/htmlvictim.c: 3 files leaked from leak_files,
2 sockets from leak_sockets, 1 pipe end from leak_pipe (and, with --odd, an
untracked and an inconsistent descriptor).

Env: HTRACE (the htrace binary), HTRACE_VICTIMS (built victims),
HTRACE_BUILD (the build directory: the agent; the screenshot is kept under
it, in tests/html).
Exit status: 0 all passed, 1 a failure, 77 htrace or chromium missing."""

import html.parser
import json
import os
import re
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

from harness import (BUILD, HTRACE, TIMEOUT, VICTIMS, check_usage_error, executable, expect, only_process,
                     read_report, run_htrace, run_tests, skip, traced_env)

VICTIM = os.path.join(VICTIMS, "htmlvictim")
BEHAVE = os.path.join(VICTIMS, "behave")
CHROMIUM = shutil.which("chromium") or ""
HOSTILE = "</script><b>x"  # a file name that must stay text
FUNCTIONS = {"leak_files": 3, "leak_sockets": 2, "leak_pipe": 1}


def lines_starting(stdout, word):
    return [line.split() for line in stdout.splitlines() if line.startswith(word + " ")]


def page_data(path):
    """The JSON embedded in the page, as the page's script reads it."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    m = re.search(r'<script type="application/json" id="htrace-data">(.*?)</script>', text, re.S)
    expect(m, f"{path}: no htrace-data element")
    return json.loads(m.group(1))


def hostile_file(d):
    """Creates d/</script><b>x (a directory '<' holding 'script><b>x')."""
    os.makedirs(os.path.join(d, "<"), exist_ok=True)
    path = d + "/" + HOSTILE
    with open(path, "w") as f:
        f.write("x")
    return path


# ---- chromium ----

def chromium(d, *args):
    profile = os.path.join(d, "chromium-profile")
    result = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu",
                             "--no-first-run", f"--user-data-dir={profile}"] + list(args),
                            capture_output=True, text=True, timeout=TIMEOUT)
    expect(result.returncode == 0, f"chromium {args}: exit {result.returncode}\n{result.stderr[-800:]}")
    return result


class Node:
    def __init__(self, tag, attrs, parent):
        self.tag, self.attrs, self.parent = tag, dict(attrs), parent
        self.children = []

    def text(self):
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self):
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.walk()

    def find(self, tag=None, cls=None, **attrs):
        return [n for n in self.walk()
                if (tag is None or n.tag == tag)
                and (cls is None or cls in n.attrs.get("class", "").split())
                and all(n.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]


class DomParser(html.parser.HTMLParser):
    VOID = {"meta", "br", "img", "input", "link", "hr", "col", "area", "base", "source", "wbr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", [], None)
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, attrs, self.cur)
        self.cur.children.append(node)
        if tag not in self.VOID:
            self.cur = node

    def handle_endtag(self, tag):
        n = self.cur
        while n is not self.root and n.tag != tag:
            n = n.parent
        if n is not self.root:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def dump_dom(d, page):
    parser = DomParser()
    parser.feed(chromium(d, "--dump-dom", "file://" + page).stdout)
    return parser.root


def table_rows(dom):
    tables = dom.find("table", id="handles")
    expect(len(tables) == 1, "the dumped DOM has no handle table: the script did not run")
    return {int(tr.attrs["data-fd"]): tr for tr in tables[0].find("tr") if "data-fd" in tr.attrs}


def flame_cells(dom):
    return [(c.attrs.get("data-label"), int(c.attrs.get("data-count", "-1")), c.attrs.get("title", ""))
            for c in dom.find("div", cls="fl")]


# ---- PNG ----

def png_pixels(path):
    """(width, height, set of distinct pixels) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        data = f.read()
    expect(data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG")
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            expect(depth == 8 and ctype in (2, 6) and interlace == 0, f"PNG format {depth} {ctype}")
            bpp = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride, prev, colours = width * bpp, bytearray(width * bpp), set()
    for y in range(height):
        start = y * (stride + 1)
        ftype, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 255
            elif ftype == 2:
                line[i] = (line[i] + b) & 255
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        colours.update(bytes(line[i:i + bpp]) for i in range(0, stride, bpp))
        prev = line
    return width, height, colours


def artefact_dir():
    """Where the screenshot stays after the test: build/tests/html."""
    d = os.path.join(BUILD, "tests", "html") if BUILD else tempfile.mkdtemp(prefix="htrace-html-")
    os.makedirs(d, exist_ok=True)
    return d


# ---- the victim run under htrace ----

class Traced:
    """htrace run -v --json -o J --html F -- htmlvictim --odd --wait FILE:
    the victim's descriptors as the kernel shows them while it waits, the
    JSON report and the page's data."""

    def __init__(self, d, extra=()):
        self.page = os.path.join(d, "page.html")
        self.json = os.path.join(d, "report.json")
        self.file = hostile_file(d)
        proc = subprocess.Popen([HTRACE, "run", "-v", "--json", "-o", self.json, "--html", self.page]
                                + list(extra) + ["--", VICTIM, "--odd", "--wait", self.file],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            self.out = read_until_ready(proc)
            self.kernel = {int(n) for n in os.listdir(f"/proc/{self.pid}/fd")}
            stdout, stderr = proc.communicate("go\n", timeout=TIMEOUT)
        finally:
            stop(proc)
        self.out += stdout
        expect(proc.returncode == 0, f"htrace run: exit {proc.returncode}: {stderr}")
        self.report = read_report(self.json)
        self.data = page_data(self.page)

    @property
    def pid(self):
        return int(lines_starting(self.out, "READY")[0][1])

    def fds(self, word):
        return sorted(int(w[1]) for w in lines_starting(self.out, word))


def stop(proc):
    """Ends a victim (or htrace run and its victim) that may be waiting:
    end of file on its stdin, then SIGKILL."""
    if proc.poll() is None:
        try:
            proc.stdin.close()
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()


def read_until_ready(proc):
    """The victim's stdout up to its READY line (read from the pipe itself,
    so that nothing waits in a buffer that select cannot see)."""
    out = ""
    while not re.search(r"^READY \d+$", out, re.M):
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        expect(ready, f"the victim did not get ready in {TIMEOUT} s: {out!r}")
        chunk = os.read(proc.stdout.fileno(), 4096).decode()
        expect(chunk, f"the victim ended before it was ready: {out!r}")
        out += chunk
    return out


def by_state(data, state):
    return sorted(h["handle"] for h in data["handles"] if h["state"] == state)


# ---- tests ----

def test_page_loads_nothing_from_outside():
    with tempfile.TemporaryDirectory() as d:
        page = os.path.join(d, "page.html")
        result = run_htrace(["run", "--html", page, "--", VICTIM, hostile_file(d)])
        expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
        expect("Handle 0x3 - OPEN:" in result.stderr, "the normal report is missing")
        with open(page, encoding="utf-8") as f:
            text = f.read()
    for pattern in (r"https?:", r"\bsrc\s*=", r"url\(", r"@import", r"<link", r"<iframe", r"//[a-z]"):
        expect(not re.search(pattern, text, re.I), f"the page matches {pattern!r}")
    expect(re.search(r"Content-Security-Policy\" content=\"default-src 'none'", text),
           "the page does not forbid loading")
    expect(text.count("</script>") == 2 and HOSTILE not in text,
           f"the hostile file name is in the page unescaped, or scripts are not 2")
    escaped = HOSTILE.replace("<", "\\u003c").replace(">", "\\u003e")
    expect(escaped in text, f"the hostile file name is not in the page's data as {escaped!r}")


def test_embedded_data_matches_json_report_and_kernel():
    with tempfile.TemporaryDirectory() as d:
        t = Traced(d)
    report = only_process(t.report)
    data = t.data
    expect(data["pid"] == report["pid"] == t.pid and data["mode"] == "exit"
           and data["status"] == {"exited": 0}, f"page {data['pid']} {data['mode']} {data['status']}")
    expect([h["handle"] for h in data["handles"]] == [h["handle"] for h in report["handles"]],
           f"page fds {[h['handle'] for h in data['handles']]}, --json {[h['handle'] for h in report['handles']]}")
    for mine, theirs in zip(data["handles"], report["handles"]):
        for key in ("state", "type", "target", "flags"):
            expect(mine[key] == theirs[key], f"fd {mine['handle']} {key}: {mine[key]!r} vs {theirs[key]!r}")
    expect(data["summary"] == report["summary"], f"summary {data['summary']} vs {report['summary']}")
    expect(by_state(data, "leaked") == t.fds("LEAK"), f"leaked {by_state(data, 'leaked')}, victim {t.fds('LEAK')}")
    expect(by_state(data, "untracked") == t.fds("RAW"), f"untracked {by_state(data, 'untracked')}")
    expect(by_state(data, "inconsistent") == t.fds("GONE"), f"inconsistent {by_state(data, 'inconsistent')}")
    open_in_page = {h["handle"] for h in data["handles"] if h["state"] != "inconsistent"}
    expect(open_in_page == t.kernel, f"page lists {sorted(open_in_page)}, the kernel had {sorted(t.kernel)}")
    graph = sorted(h["handle"] for h in data["handles"] if h["graph"])
    expect(graph == sorted(by_state(data, "leaked") + by_state(data, "inherited")), f"graph {graph}")
    counts = {f["function"]: f["count"] for f in data["functions"] if f["function"]}
    expect(counts == FUNCTIONS, f"functions {data['functions']}")
    for h in data["handles"]:
        if h["state"] == "leaked":
            stack = data["stacks"][h["open"]["stack"]]
            names = [f["function"] for f in stack["frames"]]
            expect(stack["function"] in FUNCTIONS and stack["function"] in names and "main" in names,
                   f"fd {h['handle']}: opening function {stack['function']}, frames {names}")


def test_browser_draws_table_and_flame_graph():
    with tempfile.TemporaryDirectory() as d:
        t = Traced(d)
        dom = dump_dom(d, t.page)
    rows = table_rows(dom)
    expect(sorted(rows) == [h["handle"] for h in t.data["handles"]],
           f"table rows {sorted(rows)}, handles {[h['handle'] for h in t.data['handles']]}")
    for fd in t.fds("LEAK")[:3]:
        expect(HOSTILE in rows[fd].text(), f"fd {fd}: the hostile name is not shown as text: {rows[fd].text()!r}")
    expect(not [b for b in dom.find("b") if "x" in b.text()], "the hostile name made a <b> element")
    for fd, mark in ((t.fds("RAW")[0], "untracked"), (t.fds("GONE")[0], "inconsistent")):
        expect(mark in rows[fd].attrs.get("class", "") and mark in rows[fd].text(),
               f"fd {fd} not marked {mark}: {rows[fd].attrs} {rows[fd].text()!r}")
    cells = flame_cells(dom)
    for name, count in FUNCTIONS.items():
        found = [c for c in cells if c[0] == name]
        expect(len(found) == 1 and found[0][1] == count, f"flame cells for {name}: {found}")
        title = found[0][2]
        expect(f"{count} handle" in title and "htmlvictim.c:" in title and "module htmlvictim" in title,
               f"{name}'s tooltip {title!r}")
    inherited = len(by_state(t.data, "inherited"))
    expect(("[no stack]", inherited) in [(c[0], c[1]) for c in cells],
           f"no '[no stack]' cell of {inherited} inherited handles: {[c[:2] for c in cells]}")
    root = [c for c in cells if c[0] == "all"]
    expect(root and root[0][1] == 6 + inherited, f"root cell {root}")
    heading = " ".join(n.text() for n in dom.find("h1"))
    expect(f"process {t.pid} exited with status 0" in heading, f"heading {heading!r}")
    cards = {n.attrs["data-count"]: n.text() for n in dom.find("div", cls="card")}
    counts = {k: re.match(r"\d+", v).group(0) if re.match(r"\d+", v) else v for k, v in cards.items()}
    expect(counts.get("leaked") == "6" and counts.get("untracked") == "1"
           and counts.get("inconsistent") == "1", f"cards {cards}")


def test_sorting_expanding_and_zooming_work_in_the_browser():
    with tempfile.TemporaryDirectory() as d:
        t = Traced(d)
        clicks = os.path.join(d, "clicks.html")
        with open(t.page, encoding="utf-8") as f:
            text = f.read()
        script = """<script>
var th = document.querySelectorAll('#handles th');
th[3].click(); th[0].click(); th[0].click();  /* by target, then FD ascending, descending */
document.querySelector('tr[data-fd="%d"] .tog').click();
[].filter.call(document.querySelectorAll('.fl'), function (e) {
  return e.getAttribute('data-label') === 'leak_sockets'; })[0].click();
</script>
</body>""" % t.fds("LEAK")[0]
        with open(clicks, "w", encoding="utf-8") as f:
            f.write(text.replace("</body>", script))
        dom = dump_dom(d, clicks)
    fds = [int(tr.attrs["data-fd"]) for tr in dom.find("tr") if "data-fd" in tr.attrs]
    expect(fds == sorted(fds, reverse=True) and len(fds) == len(t.data["handles"]),
           f"rows after sorting by FD descending: {fds}")
    details = [tr.text() for tr in dom.find("tr", cls="detail")]
    expect(len(details) == 1 and "leak_files" in details[0] and "OPEN" in details[0],
           f"expanded stack: {details}")
    cells = flame_cells(dom)
    zoomed = [c for c in cells if c[0] in FUNCTIONS]
    expect([c[:2] for c in zoomed] == [("leak_sockets", 2)], f"after zooming into leak_sockets: {zoomed}")
    bar = " ".join(n.text() for n in dom.find("span", cls="sub"))
    expect("zoomed into leak_sockets" in bar, f"zoom not said: {bar!r}")


def test_page_names_the_program_that_opened_a_descriptor_before_exec():
    with tempfile.TemporaryDirectory() as d:
        page, clicks = os.path.join(d, "exec.html"), os.path.join(d, "clicks.html")
        execleak = os.path.join(VICTIMS, "execleak")
        result = run_htrace(["run", "--html", page, "--", execleak, "exec"])
        expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr[-300:]}")
        data = page_data(page)
        expect(data["exec_from"]["exe"] == execleak, f"exec_from {data.get('exec_from')}")
        with open(page, encoding="utf-8") as f:
            text = f.read()
        with open(clicks, "w", encoding="utf-8") as f:
            f.write(text.replace("</body>", "<script>document.querySelectorAll('.tog')"
                                 ".forEach(function (e) { e.click(); });</script></body>"))
        details = " ".join(tr.text() for tr in dump_dom(d, clicks).find("tr", cls="detail"))
    expect(details.count(f"opened by {execleak} (pid ") == 2 and "open_leaky_log" in details,
           f"expanded stacks of the inherited descriptors: {details[:600]}")


def test_page_says_why_when_the_program_cannot_be_started():
    with tempfile.TemporaryDirectory() as d:
        page = os.path.join(d, "page.html")
        result = run_htrace(["run", "--html", page, "--", os.path.join(d, "no-such-program")])
        expect(result.returncode == 127, f"exit {result.returncode}")
        with open(page, encoding="utf-8") as f:
            text = f.read()
    expect("no report: the program could not be started" in text, f"page: {text!r}")


def test_screenshot_is_not_blank():
    keep = artefact_dir()
    with tempfile.TemporaryDirectory() as d:
        t = Traced(d)
        page = os.path.join(keep, "page.html")
        shutil.copy(t.page, page)
        png = os.path.join(keep, "page.png")
        if os.path.exists(png):
            os.unlink(png)
        chromium(d, f"--screenshot={png}", "--window-size=1200,900", "file://" + page)
    print(f"screenshot: {png}")
    expect(os.path.exists(png), "chromium made no screenshot")
    width, height, colours = png_pixels(png)
    expect((width, height) == (1200, 900), f"screenshot is {width}x{height}")
    expect(len(colours) > 20, f"the screenshot has only {len(colours)} colours")


def test_follow_forks_writes_a_page_per_process():
    with tempfile.TemporaryDirectory() as d:
        page = os.path.join(d, "page.html")
        out = os.path.join(d, "report.json")
        result = run_htrace(["run", "-f", "--json", "-o", out, "--html", page, "--", BEHAVE, "clonefork"])
        expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
        pids = [p["pid"] for p in read_report(out)]
        names = sorted(os.listdir(d))
        main_pid = pids[-1]
        child = [p for p in pids if p != main_pid]
        expect(len(child) == 1 and names == sorted(["page.html", f"page.html.{child[0]}", "report.json"]),
               f"pids {pids}, files {names}")
        expect(page_data(page)["pid"] == main_pid, "page.html is not PROG's own")
        expect(page_data(f"{page}.{child[0]}")["pid"] == child[0], "the child's page is not the child's")


class Waiting:
    """htmlvictim --wait started with the agent preloaded, tracing on."""

    def __init__(self, d):
        self.proc = subprocess.Popen([VICTIM, "--wait", hostile_file(d)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                                     env=traced_env())
        try:
            self.out = read_until_ready(self.proc)
        except BaseException:
            self.stop()
            raise
        self.pid = self.proc.pid

    def stop(self):
        stop(self.proc)
        self.proc.stdout.close()


def test_live_commands_write_the_page():
    with tempfile.TemporaryDirectory() as d:
        victim = Waiting(d)
        try:
            leaked = sorted(int(w[1]) for w in lines_starting(victim.out, "LEAK"))
            page = os.path.join(d, "live.html")
            pid = str(victim.pid)
            for args, mode in ((["-p", pid], "handles"), (["--group", "-p", pid], "open"),
                               (["--html=" + page, "-p", pid, "-diff"], "diff")):
                if "-diff" in args:
                    expect(run_htrace(["-p", pid, "-snapshot"]).returncode == 0, "-snapshot failed")
                    result = run_htrace(args)
                else:
                    result = run_htrace(["--html", page] + args)
                expect(result.returncode == 0 and result.stdout, f"{args}: exit {result.returncode} {result.stderr}")
                data = page_data(page)
                fds = sorted(h["handle"] for h in data["handles"] if h["state"] == "leaked")
                expect(data["pid"] == victim.pid and data["mode"] == mode and data["status"] is None,
                       f"{args}: page {data['pid']} {data['mode']} {data['status']}")
                want = [] if mode == "diff" else leaked
                expect(fds == want, f"{args}: leaked in the page {fds}, expected {want}")
                if mode == "diff":  # nothing opened since the snapshot
                    expect(data["handles"] == [] and data["summary"]["still_open"] == 0,
                           f"-diff right after -snapshot lists {data['handles']}, {data['summary']}")
                if mode == "open":
                    counts = {f["function"]: f["count"] for f in data["functions"] if f["function"]}
                    expect(counts == FUNCTIONS, f"functions {data['functions']}")
            dom = dump_dom(d, page)
            expect(dom.find("div", cls="empty") and table_rows_or_none(dom) is None,
                   "an empty -diff does not say so")
            bad = os.path.join(d, "no", "such", "dir", "x.html")
            for args, fragment in ((["-p", pid, "--html"], "--html needs a file name"),
                                   (["--html", "", "-p", pid], "--html needs a file name"),
                                   (["--html", page, "-p", pid, "-enable"], "not with -enable"),
                                   (["--html", bad, "-p", pid], "cannot write the HTML report")):
                check_usage_error(args, 2, fragment)
        finally:
            victim.stop()


def table_rows_or_none(dom):
    return dom.find("table", id="handles") or None


def test_bad_html_argument_of_run():
    with tempfile.TemporaryDirectory() as d:
        bad = os.path.join(d, "no", "such", "dir", "x.html")
        check_usage_error(["run", "--html"], 2, "--html needs a file name")
        check_usage_error(["run", "--html="], 2, "--html needs a file name")
        check_usage_error(["run", "--html", bad, VICTIM], 2, "cannot write the HTML report")
        result = run_htrace(["run", "--html", bad, VICTIM])
        expect("LEAK" not in result.stdout, "the program ran although the page cannot be written")
        check_usage_error(["run", "--html", d, VICTIM], 2, "cannot write the HTML report")


def main():
    if not executable(CHROMIUM):
        return skip("html", "chromium not found (apt-get install chromium)")
    return run_tests(globals(), "html", HTRACE)


if __name__ == "__main__":
    sys.exit(main())
