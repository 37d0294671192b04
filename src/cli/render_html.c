/* --html FILE: the report as one self-contained web page, viewable offline:
 * a header with the counts, a flame graph (an icicle) of the open handles
 * by opening stack, and the handle table with each handle's stacks.  The
 * data goes in as JSON (the schema of --json, stacks stored once) inside
 * <script type="application/json" id="htrace-data">, escaped so that no
 * path or symbol from the target can end that element; the small script
 * below draws the page from it with DOM calls only, and the page loads
 * nothing from anywhere else. */
#include "render.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "group.h"

/* The page's style sheet. */
static const char page_style[] =
	":root {\n"
	"  --fg: #1f2633; --muted: #677185; --line: #dde2ea; --bg: #f4f6f9; --card: #fff;\n"
	"  --accent: #2b5cc8;\n"
	"}\n"
	"* { box-sizing: border-box; }\n"
	"body {\n"
	"  margin: 0; background: var(--bg); color: var(--fg);\n"
	"  font: 14px/1.45 system-ui, \"Segoe UI\", Roboto, Arial, sans-serif;\n"
	"}\n"
	"main { max-width: 1500px; margin: 0 auto; padding: 18px 24px 40px; }\n"
	"h1 { font-size: 20px; margin: 0 0 2px; }\n"
	"h2 { font-size: 16px; margin: 0; }\n"
	"code, .mono {\n"
	"  font-family: ui-monospace, \"DejaVu Sans Mono\", Menlo, Consolas, monospace;\n"
	"  font-size: 12.5px;\n"
	"}\n"
	".sub { color: var(--muted); overflow-wrap: anywhere; }\n"
	".cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0 2px; }\n"
	".card {\n"
	"  background: var(--card); border: 1px solid var(--line); border-radius: 8px;\n"
	"  padding: 7px 14px; min-width: 118px;\n"
	"}\n"
	".card b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }\n"
	".card span {\n"
	"  color: var(--muted); font-size: 11.5px; text-transform: uppercase;\n"
	"  letter-spacing: .04em;\n"
	"}\n"
	".card.bad b { color: #b42318; }\n"
	".note { color: var(--muted); font-size: 12.5px; margin-top: 6px; }\n"
	".warn {\n"
	"  background: #fff5e6; border: 1px solid #f0c27b; border-radius: 6px;\n"
	"  padding: 6px 10px; margin-top: 8px; overflow-wrap: anywhere;\n"
	"}\n"
	"section {\n"
	"  background: var(--card); border: 1px solid var(--line); border-radius: 8px;\n"
	"  padding: 12px 16px 14px; margin-top: 16px;\n"
	"}\n"
	".bar {\n"
	"  display: flex; align-items: center; gap: 12px; margin-bottom: 10px;\n"
	"  flex-wrap: wrap;\n"
	"}\n"
	".bar .sub { font-size: 12.5px; }\n"
	"button {\n"
	"  font: inherit; font-size: 12.5px; border: 1px solid var(--line);\n"
	"  background: #f7f8fb; border-radius: 5px; padding: 2px 10px; cursor: pointer;\n"
	"  color: var(--fg);\n"
	"}\n"
	"button:disabled { opacity: .45; cursor: default; }\n"
	"#flame { position: relative; width: 100%; min-height: 24px; }\n"
	".fl {\n"
	"  position: absolute; height: 21px; line-height: 20px; padding: 0 5px;\n"
	"  border: 1px solid #fff; border-radius: 3px; overflow: hidden; white-space: nowrap;\n"
	"  text-overflow: ellipsis; cursor: pointer; color: #1b1b1b;\n"
	"  font-family: ui-monospace, \"DejaVu Sans Mono\", Menlo, Consolas, monospace;\n"
	"  font-size: 12px;\n"
	"}\n"
	".fl:hover { filter: brightness(.9); }\n"
	".fl.anc { opacity: .6; }\n"
	".empty { color: var(--muted); font-style: italic; padding: 6px 0; }\n"
	".funcs { margin-top: 12px; border-collapse: collapse; }\n"
	".funcs td { padding: 1px 10px 1px 0; border: 0; }\n"
	".funcs td.num { text-align: right; font-variant-numeric: tabular-nums; }\n"
	"table.handles { border-collapse: collapse; width: 100%; font-size: 13px; }\n"
	".handles th, .handles td {\n"
	"  text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line);\n"
	"  vertical-align: baseline;\n"
	"}\n"
	".handles th {\n"
	"  background: #eef1f6; cursor: pointer; user-select: none; white-space: nowrap;\n"
	"  font-size: 12.5px; position: sticky; top: 0;\n"
	"}\n"
	".handles th:hover { background: #e3e8f0; }\n"
	".handles th .arrow { color: var(--accent); margin-left: 3px; }\n"
	".handles td.num {\n"
	"  text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap;\n"
	"}\n"
	".handles td.target { overflow-wrap: anywhere; max-width: 460px; }\n"
	".handles tr.row:hover td { background: #f7f9fc; }\n"
	".handles tr.untracked td, .handles tr.inconsistent td { background: #fff8ed; }\n"
	".handles .none { color: #a0a7b4; }\n"
	".handles .extra { display: block; color: var(--muted); font-size: 12px; }\n"
	".tog {\n"
	"  border: 0; background: none; padding: 0 4px 0 0; color: var(--accent);\n"
	"  font-size: 12px; width: 16px;\n"
	"}\n"
	".badge {\n"
	"  display: inline-block; padding: 0 7px; border-radius: 10px; font-size: 12px;\n"
	"  white-space: nowrap;\n"
	"}\n"
	".st-leaked, .st-open { background: #fde4e2; color: #912018; }\n"
	".st-inherited, .st-closed { background: #e9ebef; color: #3d4452; }\n"
	".st-untracked { background: #ffe8cc; color: #93370d; }\n"
	".st-inconsistent { background: #ece6fd; color: #4a1fb8; }\n"
	".st-bad { background: #b42318; color: #fff; margin-left: 4px; }\n"
	"tr.detail td { background: #f8fafc; padding: 6px 8px 10px 30px; }\n"
	".stack { margin: 0; white-space: pre; overflow-x: auto; line-height: 1.5; }\n"
	".stack .hd { font-weight: 600; }\n"
	".stack .lib { color: var(--muted); }\n";

/* The page's script: builds the header, the flame graph and the table
 * from the JSON in #htrace-data. */
static const char page_script[] =
	"(function () {\n"
	"'use strict';\n"
	"var data = JSON.parse(document.getElementById('htrace-data').textContent);\n"
	"var NL = String.fromCharCode(10);\n"
	"\n"
	"function el(tag, cls, text) {\n"
	"  var e = document.createElement(tag);\n"
	"  if (cls) e.className = cls;\n"
	"  if (text !== undefined && text !== null) e.textContent = String(text);\n"
	"  return e;\n"
	"}\n"
	"function add(parent, child) { parent.appendChild(child); return child; }\n"
	"function hex(n) { return '0x' + n.toString(16); }\n"
	"function base(path) { return path ? path.slice(path.lastIndexOf('/') + 1) : path; }\n"
	"function plural(n, word) { return n + ' ' + word + (n === 1 ? '' : 's'); }\n"
	"\n"
	"/* ---- header ---- */\n"
	"\n"
	"function statusText() {\n"
	"  var s = data.status;\n"
	"  if (!s) return 'is running';\n"
	"  if (s.signal !== undefined)\n"
	"    return 'was killed by signal ' + s.signal + ' (' + data.signal_name + ')';\n"
	"  return 'exited with status ' + s.exited;\n"
	"}\n"
	"\n"
	"var VIEWS = {\n"
	"  exit: 'report at exit (htrace run)',\n"
	"  open: 'open handles of a running process (htrace --group -p PID)',\n"
	"  diff: 'handles opened since the snapshot and still open (htrace -p PID -diff)',\n"
	"  handles: 'handle listing of a running process (htrace -p PID)'\n"
	"};\n"
	"\n"
	"function card(parent, label, value, bad) {\n"
	"  var c = add(parent, el('div', 'card' + (bad && value ? ' bad' : '')));\n"
	"  c.setAttribute('data-count', label);\n"
	"  add(c, el('b', null, value));\n"
	"  add(c, el('span', null, label));\n"
	"}\n"
	"\n"
	"function warnings(parent) {\n"
	"  var s = data.summary;\n"
	"  var list = [];\n"
	"  if (data.error) list.push(data.error);\n"
	"  if (data.agent_failure) list.push('the agent stopped tracing: ' + data.agent_failure);\n"
	"  if (s && (s.stacks_dropped || s.stacks_nested || s.descriptors_lost || s.modules_dropped))\n"
	"    list.push('lost ' + s.stacks_dropped + ' stacks (depot full), ' + s.stacks_nested +\n"
	"              ' stacks (signal during unwinding), ' + s.descriptors_lost +\n"
	"              ' descriptors (beyond the table or out of memory), ' + s.modules_dropped +\n"
	"              ' modules (table full)');\n"
	"  list.forEach(function (w) { add(parent, el('div', 'warn', 'htrace: ' + w)); });\n"
	"}\n"
	"\n"
	"function header(parent, openCount) {\n"
	"  var h = add(parent, el('header'));\n"
	"  add(h, el('h1', null, 'htrace: process ' + data.pid + ' ' + statusText()));\n"
	"  add(h, el('div', 'sub mono', data.exe || '(executable unknown)'));\n"
	"  add(h, el('div', 'sub', VIEWS[data.mode] || data.mode));\n"
	"  warnings(h);\n"
	"  var s = data.summary;\n"
	"  if (!s) return;\n"
	"  var cards = add(h, el('div', 'cards'));\n"
	"  if (data.mode === 'diff') {\n"
	"    card(cards, 'still open', s.still_open, true);\n"
	"    card(cards, 'opened since snapshot', s.opened_since_snapshot);\n"
	"    card(cards, 'closed since snapshot', s.closed_since_snapshot);\n"
	"  }\n"
	"  card(cards, 'open handles', openCount);\n"
	"  card(cards, 'leaked', s.leaked, true);\n"
	"  card(cards, 'untracked', s.untracked, true);\n"
	"  card(cards, 'inconsistent', s.inconsistent, true);\n"
	"  card(cards, 'bad references', s.bad_references, true);\n"
	"  card(cards, 'inherited', s.inherited);\n"
	"  add(h, el('div', 'note', s.events + ' events recorded, ' + s.events_overwritten +\n"
	"            ' overwritten in the ring. Open handles: the handles of the flame graph' +\n"
	"            ' below (those that --group groups).'));\n"
	"}\n"
	"\n"
	"/* ---- the flame graph (icicle: the root on top, callers above callees) ---- */\n"
	"\n"
	"function isLib(m) { return !m || /^(libc\\.so|libc-|ld-linux)/.test(m); }\n"
	"\n"
	"function newNode(key, label, frame, parent) {\n"
	"  return { key: key, label: label, frame: frame, parent: parent, count: 0, fds: [],\n"
	"           children: [], byKey: {}, places: {} };\n"
	"}\n"
	"\n"
	"function child(node, f) {\n"
	"  var key = f ? f.module + '!' + (f.function || f.pc) : '[no stack]';\n"
	"  var c = node.byKey[key];\n"
	"  if (!c) {\n"
	"    c = newNode(key, f ? f.function || f.module || f.pc : '[no stack]', f, node);\n"
	"    node.byKey[key] = c;\n"
	"    node.children.push(c);\n"
	"  }\n"
	"  if (f && f.file) c.places[base(f.file) + (f.line ? ':' + f.line : '')] = 1;\n"
	"  return c;\n"
	"}\n"
	"\n"
	"function buildTree() {\n"
	"  var root = newNode('', 'all', null, null);\n"
	"  data.handles.forEach(function (h) {\n"
	"    if (!h.graph) return;\n"
	"    var st = h.open && h.open.stack !== null ? data.stacks[h.open.stack] : null;\n"
	"    var path = st && st.frames.length ? st.frames.slice().reverse() : [null];\n"
	"    var n = root;\n"
	"    n.count++;\n"
	"    n.fds.push(h.handle);\n"
	"    path.forEach(function (f) {\n"
	"      n = child(n, f);\n"
	"      n.count++;\n"
	"      n.fds.push(h.handle);\n"
	"    });\n"
	"  });\n"
	"  (function sort(n) {\n"
	"    n.children.sort(function (a, b) {\n"
	"      return b.count - a.count || (a.label < b.label ? -1 : 1);\n"
	"    });\n"
	"    n.children.forEach(sort);\n"
	"  })(root);\n"
	"  return root;\n"
	"}\n"
	"\n"
	"function color(n) {\n"
	"  if (!n.parent) return '#c9d2e0';\n"
	"  if (!n.frame) return '#d5d8de';\n"
	"  if (isLib(n.frame.module)) return 'hsl(215, 25%, 80%)';\n"
	"  var h = 0;\n"
	"  for (var i = 0; i < n.key.length; i++) h = (h * 31 + n.key.charCodeAt(i)) % 997;\n"
	"  return 'hsl(' + (12 + h % 40) + ', 78%, ' + (68 + h % 9) + '%)';\n"
	"}\n"
	"\n"
	"function tooltip(n, total) {\n"
	"  var lines = [n.label];\n"
	"  var f = n.frame;\n"
	"  if (f) {\n"
	"    var places = Object.keys(n.places);\n"
	"    if (places.length)\n"
	"      lines.push(places.slice(0, 4).join(', ') + (places.length > 4 ? ', ...' : ''));\n"
	"    lines.push('module ' + f.module + (f.function ? '' : ', pc ' + f.pc) +\n"
	"               (f.inlined ? ' (inlined)' : ''));\n"
	"  } else if (n.parent) {\n"
	"    lines.push('no stack recorded: inherited, or the stack could not be taken');\n"
	"  }\n"
	"  var pct = total ? ' (' + (100 * n.count / total).toFixed(1) + '%)' : '';\n"
	"  lines.push(plural(n.count, 'handle') + pct);\n"
	"  var fds = n.fds.slice().sort(function (a, b) { return a - b; });\n"
	"  lines.push('fd ' + fds.slice(0, 16).join(' ') + (fds.length > 16 ? ' ...' : ''));\n"
	"  return lines.join(NL);\n"
	"}\n"
	"\n"
	"function flameGraph(parent, root) {\n"
	"  var sec = add(parent, el('section'));\n"
	"  var bar = add(sec, el('div', 'bar'));\n"
	"  add(bar, el('h2', null, 'Open handles by opening stack'));\n"
	"  var reset = add(bar, el('button', null, 'Reset zoom'));\n"
	"  var where = add(bar, el('span', 'sub', 'outermost frame on top; click a frame to zoom'));\n"
	"  var box = add(sec, el('div'));\n"
	"  box.id = 'flame';\n"
	"  if (!root.count) {\n"
	"    add(box, el('div', 'empty', 'No open handle to show.'));\n"
	"    reset.disabled = true;\n"
	"    return sec;\n"
	"  }\n"
	"  var focus = root, ROW = 22;\n"
	"\n"
	"  function cell(n, x, w, depth, ancestor) {\n"
	"    var label = w > 28 ? n.label + ' (' + n.count + ')' : '';\n"
	"    var d = add(box, el('div', 'fl' + (ancestor ? ' anc' : ''), label));\n"
	"    d.style.left = x + 'px';\n"
	"    d.style.width = Math.max(w, 1) + 'px';\n"
	"    d.style.top = depth * ROW + 'px';\n"
	"    d.style.background = color(n);\n"
	"    d.title = tooltip(n, root.count);\n"
	"    d.setAttribute('data-count', n.count);\n"
	"    d.setAttribute('data-label', n.label);\n"
	"    d.onclick = function () { focus = n; draw(); };\n"
	"  }\n"
	"\n"
	"  function lay(n, x, w, depth) {\n"
	"    var deepest = depth, cx = x;\n"
	"    n.children.forEach(function (c) {\n"
	"      var cw = w * c.count / n.count;\n"
	"      if (cw >= 2) {\n"
	"        cell(c, cx, cw, depth + 1, false);\n"
	"        deepest = Math.max(deepest, lay(c, cx, cw, depth + 1));\n"
	"      }\n"
	"      cx += cw;\n"
	"    });\n"
	"    return deepest;\n"
	"  }\n"
	"\n"
	"  function draw() {\n"
	"    box.textContent = '';\n"
	"    var width = box.clientWidth || 1000, chain = [];\n"
	"    for (var n = focus; n; n = n.parent) chain.unshift(n);\n"
	"    chain.forEach(function (a, i) { cell(a, 0, width, i, i < chain.length - 1); });\n"
	"    var deepest = lay(focus, 0, width, chain.length - 1);\n"
	"    box.style.height = (deepest + 1) * ROW + 'px';\n"
	"    reset.disabled = focus === root;\n"
	"    where.textContent = focus === root\n"
	"      ? 'outermost frame on top; click a frame to zoom'\n"
	"      : 'zoomed into ' + focus.label + ' (' + plural(focus.count, 'handle') + ')';\n"
	"  }\n"
	"  reset.onclick = function () { focus = root; draw(); };\n"
	"  var pending = 0;\n"
	"  window.addEventListener('resize', function () {\n"
	"    clearTimeout(pending);\n"
	"    pending = setTimeout(draw, 100);\n"
	"  });\n"
	"  draw();\n"
	"  functionList(sec);\n"
	"  return sec;\n"
	"}\n"
	"\n"
	"function functionList(parent) {\n"
	"  if (!data.functions || !data.functions.length) return;\n"
	"  add(parent, el('div', 'note', 'Open handles by opening function (first frame outside libc):'));\n"
	"  var t = add(parent, el('table', 'funcs mono'));\n"
	"  data.functions.forEach(function (f) {\n"
	"    var tr = add(t, el('tr'));\n"
	"    add(tr, el('td', 'num', f.count));\n"
	"    add(tr, el('td', null, (f.function || '?') + ' (' + (f.module || '?') + ')'));\n"
	"  });\n"
	"}\n"
	"\n"
	"/* ---- the handle table ---- */\n"
	"\n"
	"function age(ns) {\n"
	"  if (ns === null || ns === undefined) return '';\n"
	"  var s = ns / 1e9;\n"
	"  if (s < 120) return s.toFixed(1) + ' s';\n"
	"  if (s < 7200) return (s / 60).toFixed(1) + ' min';\n"
	"  return (s / 3600).toFixed(1) + ' h';\n"
	"}\n"
	"\n"
	"function openingFunction(h) {\n"
	"  var st = h.open && h.open.stack !== null ? data.stacks[h.open.stack] : null;\n"
	"  if (!st || !st.function) return '';\n"
	"  return st.function + ' (' + st.module + ')';\n"
	"}\n"
	"\n"
	"function hasBad(h) {\n"
	"  return h.traces.some(function (t) { return t.kind === 'BAD_REFERENCE'; });\n"
	"}\n"
	"\n"
	"var COLUMNS = [\n"
	"  { title: 'FD', num: true, get: function (h) { return h.handle; } },\n"
	"  { title: 'State', get: function (h) { return h.state; } },\n"
	"  { title: 'Type', get: function (h) { return h.type || ''; } },\n"
	"  { title: 'Target', get: function (h) { return h.target || ''; } },\n"
	"  { title: 'Flags', get: function (h) { return h.flags.join('|'); } },\n"
	"  { title: 'Age', num: true, get: function (h) { return h.age_ns === null ? -1 : h.age_ns; } },\n"
	"  { title: 'Opened by', get: function (h) { return h.open ? h.open.api || '?' : ''; } },\n"
	"  { title: 'Thread', num: true, get: function (h) { return h.open ? h.open.tid : -1; } },\n"
	"  { title: 'Opening function', get: openingFunction }\n"
	"];\n"
	"\n"
	"function frameLine(f) {\n"
	"  var s = f.pc + ': ' + f.module;\n"
	"  if (f.function)\n"
	"    s += '!' + f.function + (f.inlined ? ' (inlined)' : '+0x' + f.offset.toString(16));\n"
	"  if (f.guess) s += ' (guess: nearest exported symbol)';\n"
	"  if (f.file && f.line) s += ' [' + base(f.file) + ':' + f.line + ']';\n"
	"  return s;\n"
	"}\n"
	"\n"
	"function traceHeader(h, t) {\n"
	"  var notes = [t.api || '?', 'thread ' + t.tid];\n"
	"  if (t.previous_image && data.exec_from)\n"
	"    notes.push('opened by ' + (data.exec_from.exe || 'the previous program') + ' (pid ' +\n"
	"               data.exec_from.pid + ') before it executed this program');\n"
	"  else if (t.inherited) notes.push('inherited');\n"
	"  if (t.implicit) notes.push('implicit');\n"
	"  if (t.owned) notes.push('closed behind the FILE or DIR that owns it');\n"
	"  if (t.stale) notes.push('through a FILE or DIR whose descriptor was closed');\n"
	"  var kind = t.kind.replace('_', ' ');\n"
	"  return 'Handle ' + hex(h.handle) + ' - ' + kind + ': [' + notes.join(', ') + ']';\n"
	"}\n"
	"\n"
	"function stackText(pre, h) {\n"
	"  function line(text, cls) { add(pre, el('span', cls, text + NL)); }\n"
	"  if (h.state === 'untracked')\n"
	"    line('open in the kernel, not seen opened by the agent in this tracing period: no stack', 'hd');\n"
	"  if (h.state === 'inconsistent')\n"
	"    line('the agent believes it open, the kernel has it closed', 'hd');\n"
	"  h.traces.forEach(function (t) {\n"
	"    line(traceHeader(h, t), 'hd');\n"
	"    var st = t.stack !== null ? data.stacks[t.stack] : null;\n"
	"    if (!st || !st.frames.length) line('(no stack recorded)', 'lib');\n"
	"    else st.frames.forEach(function (f) { line(frameLine(f), isLib(f.module) ? 'lib' : null); });\n"
	"  });\n"
	"}\n"
	"\n"
	"function stateCell(td, h) {\n"
	"  add(td, el('span', 'badge st-' + h.state, h.state));\n"
	"  if (hasBad(h)) add(td, el('span', 'badge st-bad', 'bad ref'));\n"
	"}\n"
	"\n"
	"function targetCell(td, h) {\n"
	"  td.textContent = h.target || '';\n"
	"  if (h.shares_description_with !== undefined)\n"
	"    add(td, el('span', 'extra',\n"
	"               'shares its open file description with ' + h.shares_description_with));\n"
	"  if (h.owner) add(td, el('span', 'extra', 'owned by a FILE or DIR (' + h.owner + ')'));\n"
	"}\n"
	"\n"
	"function handleTable(parent) {\n"
	"  var sec = add(parent, el('section'));\n"
	"  var bar = add(sec, el('div', 'bar'));\n"
	"  add(bar, el('h2', null, 'Handles (' + data.handles.length + ')'));\n"
	"  add(bar, el('span', 'sub', 'click a column to sort, a row\\'s arrow for its stack'));\n"
	"  if (!data.handles.length) {\n"
	"    add(sec, el('div', 'empty', 'No handle to list.'));\n"
	"    return;\n"
	"  }\n"
	"  var table = add(sec, el('table', 'handles'));\n"
	"  table.id = 'handles';\n"
	"  var headRow = add(add(table, el('thead')), el('tr'));\n"
	"  var body = add(table, el('tbody'));\n"
	"  var sortBy = 0, descending = false, open = {}, limit = 2000;\n"
	"\n"
	"  function row(h) {\n"
	"    var tr = add(body, el('tr', 'row ' + h.state));\n"
	"    tr.setAttribute('data-fd', h.handle);\n"
	"    var first = add(tr, el('td', 'num mono'));\n"
	"    var tog = add(first, el('button', 'tog', open[h.handle] ? '\\u25be' : '\\u25b8'));\n"
	"    tog.title = 'show the stack';\n"
	"    add(first, document.createTextNode(h.handle));\n"
	"    first.title = hex(h.handle);\n"
	"    stateCell(add(tr, el('td')), h);\n"
	"    add(tr, el('td', null, h.type || ''));\n"
	"    targetCell(add(tr, el('td', 'target mono')), h);\n"
	"    add(tr, el('td', 'mono', h.flags.join('|')));\n"
	"    add(tr, el('td', 'num', age(h.age_ns)));\n"
	"    add(tr, el('td', 'mono', h.open ? h.open.api || '?' : ''));\n"
	"    add(tr, el('td', 'num', h.open ? h.open.tid : ''));\n"
	"    var fn = openingFunction(h);\n"
	"    var none = h.state === 'untracked' ? 'not seen opened' : '\\u2014';\n"
	"    add(tr, el('td', fn ? 'mono' : 'none', fn || none));\n"
	"    tog.onclick = function () { open[h.handle] = !open[h.handle]; fill(); };\n"
	"    if (!open[h.handle]) return;\n"
	"    var td = add(add(body, el('tr', 'detail')), el('td'));\n"
	"    td.colSpan = COLUMNS.length;\n"
	"    stackText(add(td, el('pre', 'stack mono')), h);\n"
	"  }\n"
	"\n"
	"  function fill() {\n"
	"    var col = COLUMNS[sortBy], sign = descending ? -1 : 1;\n"
	"    var rows = data.handles.slice().sort(function (a, b) {\n"
	"      var x = col.get(a), y = col.get(b);\n"
	"      var c = col.num ? x - y : String(x).localeCompare(String(y));\n"
	"      return sign * c || a.handle - b.handle;\n"
	"    });\n"
	"    body.textContent = '';\n"
	"    rows.slice(0, limit).forEach(row);\n"
	"    if (rows.length > limit) {\n"
	"      var td = add(add(body, el('tr')), el('td'));\n"
	"      td.colSpan = COLUMNS.length;\n"
	"      var more = add(td, el('button', null, 'Show all ' + rows.length + ' handles'));\n"
	"      more.onclick = function () {\n"
	"        limit = rows.length;\n"
	"        fill();\n"
	"      };\n"
	"    }\n"
	"    Array.prototype.forEach.call(headRow.children, function (th, i) {\n"
	"      th.lastChild.textContent = i === sortBy ? (descending ? '\\u25bc' : '\\u25b2') : '';\n"
	"    });\n"
	"  }\n"
	"\n"
	"  COLUMNS.forEach(function (c, i) {\n"
	"    var th = add(headRow, el('th', null, c.title));\n"
	"    add(th, el('span', 'arrow'));\n"
	"    th.onclick = function () {\n"
	"      descending = sortBy === i ? !descending : false;\n"
	"      sortBy = i;\n"
	"      fill();\n"
	"    };\n"
	"  });\n"
	"  fill();\n"
	"}\n"
	"\n"
	"var main = add(document.body, el('main'));\n"
	"var root = buildTree();\n"
	"header(main, root.count);\n"
	"if (data.error) return;\n"
	"flameGraph(main, root);\n"
	"handleTable(main);\n"
	"document.title = 'htrace: process ' + data.pid + (data.exe ? ' (' + base(data.exe) + ')' : '');\n"
	"})();\n";

/* --- the data ------------------------------------------------------------- */

/* The depot ids of the stacks the page shows, ascending, each once: the
 * JSON lists each stack once and the handles refer to it by position. */
struct stack_index {
	uint32_t *ids;
	size_t n;
};

static int compare_ids(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

static void add_id(struct stack_index *ix, uint32_t id)
{
	if (id)
		ix->ids[ix->n++] = id;
}

static int index_stacks(const struct report *r, struct stack_index *ix)
{
	size_t cap = 1;
	for (size_t i = 0; i < r->nhandles; i++)
		cap += 1 + r->handles[i].ntraces;
	ix->n = 0;
	if (!(ix->ids = malloc(cap * sizeof(*ix->ids))))
		return -1;
	for (size_t i = 0; i < r->nhandles; i++) {
		const struct report_handle *h = &r->handles[i];
		if (h->slot)
			add_id(ix, h->slot->open.stack);
		for (size_t t = 0; t < h->ntraces; t++)
			add_id(ix, h->traces[t]->stack);
	}
	qsort(ix->ids, ix->n, sizeof(*ix->ids), compare_ids);
	size_t unique = 0;
	for (size_t i = 0; i < ix->n; i++)
		if (!unique || ix->ids[unique - 1] != ix->ids[i])
			ix->ids[unique++] = ix->ids[i];
	ix->n = unique;
	return 0;
}

/* The stack's position in the JSON "stacks", as JSON: a number or null. */
static void stack_ref(FILE *out, const struct stack_index *ix, uint32_t id)
{
	const uint32_t *found = id ? bsearch(&id, ix->ids, ix->n, sizeof(id), compare_ids) : NULL;
	if (found)
		fprintf(out, "%zu", (size_t)(found - ix->ids));
	else
		fputs("null", out);
}

/* "stacks":[{"function":…,"module":…,"frames":[innermost first]},…] */
static void write_stacks(FILE *out, const struct report *r, struct symbolizer *sym,
			 const struct stack_index *ix)
{
	fputs(",\"stacks\":[", out);
	for (size_t i = 0; i < ix->n; i++) {
		struct function_count opener = { NULL, NULL, 0 };
		group_opening_function(r, sym, ix->ids[i], &opener);
		fputs(i ? ",{\"function\":" : "{\"function\":", out);
		render_json_string(out, opener.function, 1);
		fputs(",\"module\":", out);
		render_json_string(out, opener.module, 1);
		fputs(",\"frames\":", out);
		struct htrace_event ev = { .stack = ix->ids[i] };
		render_json_frames(out, r, sym, &ev, 1);
		fputc('}', out);
	}
	fputc(']', out);
}

static void write_trace(FILE *out, const struct htrace_event *ev, const struct stack_index *ix)
{
	fputc('{', out);
	render_json_trace_fields(out, ev, 1);
	fputs(",\"stack\":", out);
	stack_ref(out, ix, ev->stack);
	fputc('}', out);
}

/* The OPEN that made the handle: the live table's, else the newest listed. */
static const struct htrace_event *opening_event(const struct report_handle *h)
{
	if (h->slot)
		return &h->slot->open;
	for (size_t i = 0; i < h->ntraces; i++)
		if (h->traces[i]->kind == HTRACE_OPEN)
			return h->traces[i];
	return NULL;
}

static void write_handle(FILE *out, const struct report *r, const struct report_handle *h,
			 int in_graph, const struct stack_index *ix)
{
	fputc('{', out);
	render_json_handle_fields(out, r, h, 1);
	fprintf(out, ",\"graph\":%s,\"open\":", in_graph ? "true" : "false");
	const struct htrace_event *open = opening_event(h);
	if (open)
		write_trace(out, open, ix);
	else
		fputs("null", out);
	fputs(",\"traces\":[", out);
	for (size_t i = 0; i < h->ntraces; i++) {
		if (i)
			fputc(',', out);
		write_trace(out, h->traces[i], ix);
	}
	fputs("]}", out);
}

/* "functions":[…] as --group counts them; in_graph[i] is set for the
 * handles --group groups, the ones the flame graph shows. */
static void write_grouping(FILE *out, const struct report *r, struct symbolizer *sym,
			   char *in_graph)
{
	struct grouping g;
	if (group_build(r, sym, &g) < 0) {
		fputs(",\"functions\":[]", out);
		return;
	}
	for (size_t i = 0; i < g.ngroups; i++)
		for (size_t k = 0; k < g.groups[i].count; k++)
			in_graph[g.groups[i].handles[k] - r->handles] = 1;
	fputc(',', out);
	render_json_functions(out, &g, 1);
	group_free(&g);
}

static const char *mode_name(const struct report *r)
{
	if (r->opt->mode == REPORT_DIFF)
		return "diff";
	if (r->opt->mode == REPORT_HANDLES)
		return "handles";
	return r->status.known ? "exit" : "open"; /* htrace run, or --group -p PID */
}

static void write_process(FILE *out, const struct report *r)
{
	fputc('{', out);
	render_json_process_fields(out, r, 1);
	fprintf(out, ",\"mode\":\"%s\"", mode_name(r));
	if (r->status.known && r->status.signaled)
		fprintf(out, ",\"signal_name\":\"%s\"", render_signal_name(r->status.value));
}

static void write_data(FILE *out, const struct report *r)
{
	struct symbolizer *sym = render_symbolizer(r->snap);
	struct stack_index ix = { NULL, 0 };
	char *in_graph = calloc(r->nhandles + 1, 1);
	write_process(out, r);
	if (in_graph && index_stacks(r, &ix) == 0) {
		write_grouping(out, r, sym, in_graph);
		write_stacks(out, r, sym, &ix);
		fputs(",\"handles\":[", out);
		for (size_t i = 0; i < r->nhandles; i++) {
			if (i)
				fputc(',', out);
			write_handle(out, r, &r->handles[i], in_graph[i], &ix);
		}
		fputs("],", out);
	} else {
		fputs(",\"functions\":[],\"stacks\":[],\"handles\":[],", out);
	}
	render_json_summary(out, r);
	fputc('}', out);
	free(ix.ids);
	free(in_graph);
	if (sym)
		sym_close(sym);
}

/* --- the page ------------------------------------------------------------- */

/* Text from the target inside HTML. */
static void html_text(FILE *out, const char *s)
{
	for (; *s; s++) {
		if (*s == '<')
			fputs("&lt;", out);
		else if (*s == '>')
			fputs("&gt;", out);
		else if (*s == '&')
			fputs("&amp;", out);
		else if (*s == '"')
			fputs("&quot;", out);
		else if (*s == '\'')
			fputs("&#39;", out);
		else
			fputc(*s, out);
	}
}

static void write_head(FILE *out, const struct report *r)
{
	const struct snapshot *s = r->snap;
	fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
	      "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n"
	      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n", out);
	fprintf(out, "<title>htrace: process %d", (int)s->pid);
	if (s->have_db && s->db.db.exe[0]) {
		fputs(" (", out);
		html_text(out, s->db.db.exe);
		fputc(')', out);
	}
	fprintf(out, "</title>\n<style>\n%s</style>\n</head>\n<body>\n", page_style);
}

void render_html(FILE *out, const struct report *r, const struct render_options *opt)
{
	(void)opt; /* the page always shows the groups and every listed trace */
	write_head(out, r);
	fputs("<noscript><p>This page draws its flame graph and table with JavaScript; its data "
	      "is the JSON of the element htrace-data.</p></noscript>\n"
	      "<script type=\"application/json\" id=\"htrace-data\">", out);
	write_data(out, r);
	fprintf(out, "</script>\n<script>\n%s</script>\n</body>\n</html>\n", page_script);
	fflush(out);
}

void render_html_no_report(FILE *out, const char *why)
{
	fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
	      "<title>htrace: no report</title>\n</head>\n<body>\n<p>htrace: no report: ", out);
	html_text(out, why);
	fputs("</p>\n</body>\n</html>\n", out);
	fflush(out);
}

FILE *render_html_open(const char *path, pid_t pid)
{
	char *name = NULL;
	if (pid > 0 ? asprintf(&name, "%s.%d", path, (int)pid) < 0 : !(name = strdup(path))) {
		fprintf(stderr, "htrace: out of memory naming the HTML report\n");
		return NULL;
	}
	FILE *f = fopen(name, "we");
	if (!f)
		fprintf(stderr, "htrace: cannot write the HTML report to %s: %s\n", name,
			strerror(errno));
	free(name);
	return f;
}
