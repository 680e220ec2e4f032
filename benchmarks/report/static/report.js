// The prompt browsers of the SPPO benchmark report. The data sits in the element #report-data, gzip + base64
// (inert: not JavaScript); every text of it (prompts, answers, judge texts) reaches the page only as a DOM text
// node (Element.append(string), textContent), never as HTML.
(function () {
  "use strict";
  var PAGE = 20;

  function el(tag, cls) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    for (var i = 2; i < arguments.length; i++) {
      var kid = arguments[i];
      if (kid !== null && kid !== undefined) e.append(kid);  // a string becomes a text node
    }
    return e;
  }

  async function load() {
    var holder = document.getElementById("report-data");
    var b64 = holder.textContent.trim();
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
    return JSON.parse(await new Response(stream).text());
  }

  function textBlock(cls, text) {
    return el("div", "text " + (cls || ""), text);
  }

  function turns(list, prefix) {
    var box = el("div", "turns");
    list.forEach(function (t, i) {
      if (list.length > 1) box.append(el("div", "turn-label", prefix + " " + (i + 1)));
      box.append(textBlock("", t));
    });
    return box;
  }

  function verdictClass(v) {
    return "v-" + String(v).replace(/[^a-z0-9]+/gi, "-");
  }

  function cellView(name, cell) {
    var box = el("div", "cell");
    box.append(el("h4", null, name));
    if (!cell) {
      box.append(el("p", "missing", "no answer judged"));
      return box;
    }
    var badge = el("div", "badge " + verdictClass(cell.verdicts[0]), cell.badge);
    box.append(badge);
    box.append(el("div", "answer", turns(cell.answer, "turn")));
    cell.notes.forEach(function (n) {
      var d = el("details", "judge", el("summary", null, "judge — " + n[0]), textBlock("judge-text", n[1]));
      box.append(d);
    });
    return box;
  }

  function itemView(b, item) {
    var head = el("header", null, el("span", "qid", "#" + item.id), el("span", "cat", item.category));
    if (item.changed) head.append(el("span", "changed", "verdict changed between checkpoints"));
    var art = el("article", "item", head, el("div", "prompt", turns(item.prompt, "user turn")));
    if (item.baseline) {
      art.append(el("details", "baseline", el("summary", null, b.baseline_name), turns(item.baseline, "turn")));
    }
    var grid = el("div", "cells");
    grid.style.gridTemplateColumns = "repeat(" + b.columns.length + ", minmax(0, 1fr))";
    b.columns.forEach(function (c, i) { grid.append(cellView(c, item.cells[i])); });
    art.append(grid);
    return art;
  }

  function haystack(item) {
    if (item._text === undefined) {
      var parts = [item.id, item.category].concat(item.prompt, item.baseline || []);
      item.cells.forEach(function (c) {
        if (!c) return;
        parts = parts.concat(c.answer, [c.badge]);
        c.notes.forEach(function (n) { parts.push(n[0], n[1]); });
      });
      item._text = parts.join("\n").toLowerCase();
    }
    return item._text;
  }

  function option(value, label) {
    var o = el("option", null, label);
    o.value = value;
    return o;
  }

  function select(cls, first, values, labels) {
    var s = el("select", cls, option("", first));
    values.forEach(function (v, i) { s.append(option(String(i), labels ? labels[i] : v)); });
    return s;
  }

  function browserView(b) {
    var cats = Array.from(new Set(b.items.map(function (x) { return x.category; }))).sort();
    var ui = {
      search: el("input", "f-search"),
      category: select("f-category", "all categories", cats),
      column: select("f-column", "any checkpoint", b.columns),
      verdict: select("f-verdict", "any verdict", b.verdicts),
      changed: el("input", "f-changed"),
      shown: el("span", "shown"),
      prev: el("button", "prev", "◀ previous"),
      next: el("button", "next", "next ▶"),
      list: el("div", "items")
    };
    ui.search.type = "search";
    ui.search.placeholder = "search prompts, answers and judge texts";
    ui.changed.type = "checkbox";
    var root = el("section", "browser",
      el("div", "controls", ui.search, ui.category, ui.column, ui.verdict,
         el("label", "changed-label", ui.changed, " verdict changed between checkpoints"),
         ui.prev, ui.next, ui.shown),
      ui.list);
    root.id = "browse-" + b.suite;
    root.dataset.suite = b.suite;
    var state = { page: 0, rows: b.items };

    function matches(item) {
      var q = ui.search.value.trim().toLowerCase();
      if (q && haystack(item).indexOf(q) < 0) return false;
      if (ui.category.value !== "" && item.category !== cats[+ui.category.value]) return false;
      if (ui.changed.checked && !item.changed) return false;
      if (ui.verdict.value !== "") {
        var want = b.verdicts[+ui.verdict.value];
        var cols = ui.column.value === "" ? item.cells : [item.cells[+ui.column.value]];
        return cols.some(function (c) { return c && c.verdicts.indexOf(want) >= 0; });
      }
      return true;
    }

    function draw() {
      var start = state.page * PAGE;
      var shown = state.rows.slice(start, start + PAGE);
      ui.list.replaceChildren.apply(ui.list, shown.map(function (x) { return itemView(b, x); }));
      ui.shown.textContent = state.rows.length
        ? (start + 1) + "–" + (start + shown.length) + " of " + state.rows.length + " prompts"
          + (state.rows.length < b.items.length ? " (filtered from " + b.items.length + ")" : "")
        : "no prompt matches (of " + b.items.length + ")";
      root.dataset.filtered = String(state.rows.length);
      ui.prev.disabled = state.page === 0;
      ui.next.disabled = start + PAGE >= state.rows.length;
    }

    function refilter() {
      state.rows = b.items.filter(matches);
      state.page = 0;
      draw();
    }

    var timer = null;
    ui.search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(refilter, 150); });
    [ui.category, ui.column, ui.verdict, ui.changed].forEach(function (c) { c.addEventListener("change", refilter); });
    ui.prev.addEventListener("click", function () { state.page -= 1; draw(); });
    ui.next.addEventListener("click", function () { state.page += 1; draw(); });
    draw();
    return root;
  }

  function show(tabs, views, i) {
    views.forEach(function (v, j) { v.hidden = i !== j; });
    tabs.forEach(function (t, j) { t.setAttribute("aria-selected", String(i === j)); });
  }

  function render(data) {
    var host = document.getElementById("browsers");
    if (!data.browsers.length) {
      host.replaceChildren(el("p", null, "No judged suite in this store."));
      return;
    }
    var views = data.browsers.map(browserView);
    var tabs = data.browsers.map(function (b, i) {
      var t = el("button", "tab", b.title + " (" + b.items.length + ")");
      t.dataset.suite = b.suite;
      t.addEventListener("click", function () { show(tabs, views, i); });
      return t;
    });
    host.replaceChildren.apply(host, [el("div", "tabs")].concat(views));
    host.firstChild.append.apply(host.firstChild, tabs);
    show(tabs, views, 0);
  }

  load().then(render).then(function () {
    document.body.dataset.ready = "1";
  }, function (err) {
    document.getElementById("browsers").replaceChildren(
      el("p", "error", "The answers could not be shown: " + err + " (a browser with DecompressionStream is needed:" +
         " Chrome 80+, Firefox 113+, Safari 16.4+)."));
    document.body.dataset.ready = "error";
  });
})();
