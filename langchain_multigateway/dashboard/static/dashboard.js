// The Deployments panel refreshes itself: every few seconds it fetches /ui/api/deployments
// and rebuilds its tables from the JSON (text only: names are set as text, never as HTML).
(function () {
  "use strict";
  var panel = document.getElementById("deployments");
  if (!panel) { return; }
  var endpoint = panel.getAttribute("data-endpoint");
  var every = parseInt(panel.getAttribute("data-refresh"), 10) || 3000;
  var body = document.getElementById("deployments-body");
  var stamp = document.getElementById("deployments-stamp");

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) { node.className = cls; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }
  function ms(v) { return v === null || v === undefined ? "\u2013" : Math.round(v).toLocaleString("en-US") + " ms"; }
  function pct(v) { return (v * 100).toFixed(1) + " %"; }
  function limit(left, set) { return set === null || set === undefined ? "no limit" : (left === null ? "?" : left) + " / " + set; }
  function learned(d, kind) {
    var left = d["learned_" + kind + "_left"], limit = d["learned_" + kind + "_limit"], reset = d["learned_" + kind + "_reset"];
    if (left === null || left === undefined) { return "\u2013"; }
    var text = left.toLocaleString("en-US") + (limit === null || limit === undefined ? "" : " / " + limit.toLocaleString("en-US"));
    return text + (reset === null || reset === undefined ? "" : " \u00b7 resets in " + reset + " s");
  }
  function seconds(v) { return v === null || v === undefined ? "\u2013" : v + " s"; }
  function clock(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19); }

  function cell(row, field, text) {
    var td = el("td", null, text);
    td.setAttribute("data-field", field);
    row.appendChild(td);
    return td;
  }

  function render(data) {
    var frag = document.createDocumentFragment();
    data.routers.forEach(function (r) {
      var box = el("div", "router");
      box.setAttribute("data-router", r.router);
      var h = el("h3", null, r.router + " ");
      var s = r.state;
      var pill = el("span", "pill " + (s.live ? "ok" : "bad"),
        s.backend + " state \u00b7 " + (s.shared ? "shared" : "this process only") + (s.live ? "" : " \u00b7 unreachable"));
      pill.setAttribute("data-field", "state");
      h.appendChild(pill);
      box.appendChild(h);
      var wrap = el("div", "scroll");
      var table = el("table", "deployments");
      var head = el("tr");
      ["deployment", "breaker", "EWMA latency", "TTFT", "error rate", "in flight", "rpm left / set", "tpm left / set",
        "requests left (provider)", "tokens left (provider)", "cooldown"]
        .forEach(function (t) { head.appendChild(el("th", null, t)); });
      var thead = el("thead"); thead.appendChild(head); table.appendChild(thead);
      var tbody = el("tbody");
      r.deployments.forEach(function (d) {
        var row = el("tr");
        row.setAttribute("data-deployment", d.name);
        var name = el("td");
        name.appendChild(el("b", null, d.name));
        name.appendChild(el("br"));
        name.appendChild(el("small", null, d.provider + ":" + d.model));
        row.appendChild(name);
        var b = el("td");
        var badge = el("span", "breaker " + d.breaker, d.breaker);
        badge.setAttribute("data-field", "breaker");
        b.appendChild(badge);
        row.appendChild(b);
        cell(row, "latency", ms(d.ewma_latency_ms));
        cell(row, "ttft", ms(d.ewma_ttft_ms));
        cell(row, "error_rate", pct(d.error_rate));
        cell(row, "in_flight", d.in_flight);
        cell(row, "rpm", limit(d.remaining_rpm, d.rpm));
        cell(row, "tpm", limit(d.remaining_tpm, d.tpm));
        cell(row, "learned_requests", learned(d, "requests"));
        cell(row, "learned_tokens", learned(d, "tokens"));
        cell(row, "retry_after", seconds(d.retry_after));
        tbody.appendChild(row);
      });
      table.appendChild(tbody);
      wrap.appendChild(table);
      box.appendChild(wrap);
      frag.appendChild(box);
    });
    body.replaceChildren(frag);
    stamp.textContent = "as of " + clock(data.generated_at);
    stamp.classList.remove("stale");
  }

  function tick() {
    fetch(endpoint, { credentials: "same-origin", cache: "no-store" })
      .then(function (resp) {
        if (resp.status === 401) { stamp.textContent = "signed out: reload to sign in"; throw new Error("401"); }
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(render)
      .catch(function () { stamp.classList.add("stale"); })
      .finally(function () { window.setTimeout(tick, every); });
  }
  window.setTimeout(tick, every);
})();
