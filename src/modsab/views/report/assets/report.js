// modsab report: instance browser. Reads the JSON block #instance-data, filters with
// typed arrays, renders one page of rows at a time. Every data text goes through
// textContent (never innerHTML), so nothing in the data can become markup.
(function () {
  "use strict";
  var block = document.getElementById("instance-data");
  if (!block) return;
  var D = JSON.parse(block.textContent);
  var n = D.id.length, m = D.agents.length, PAGE = 50;
  var ROLE = {}; D.roles.forEach(function (r, i) { ROLE[r] = i; });
  var role = Int8Array.from(D.role), gold = Int32Array.from(D.gold), pred = Int32Array.from(D.pred);
  var ds = D.ds.length ? Int32Array.from(D.ds) : null;
  var visible = new Int32Array(n), count = 0, page = 0;
  // descriptors and raw answers: gzip+base64, unpacked once in the background
  var T = null, textBlock = document.getElementById("text-data"), textState = textBlock ? "loading" : "none";
  var whenText = [];
  if (textBlock) {
    try {
      var bin = atob(textBlock.textContent.trim()), bytes = new Uint8Array(bin.length);
      for (var b = 0; b < bin.length; b++) bytes[b] = bin.charCodeAt(b);
      var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
      new Response(stream).text().then(function (t) {
        T = JSON.parse(t); textState = "ready";
        whenText.splice(0).forEach(function (f) { f(); });
      }, function () { textState = "failed"; whenText.splice(0).forEach(function (f) { f(); }); });
    } catch (e) { textState = "failed"; }
  }
  function withText(f) { if (textState === "loading") whenText.push(f); else f(); }

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = String(text);
    return e;
  }
  function option(select, value, text) { var o = el("option", null, text); o.value = value; select.appendChild(o); }
  function $(id) { return document.getElementById(id); }
  var fRole = $("f-role"), fAgent = $("f-agent"), fGold = $("f-gold"), fPred = $("f-pred"), fDs = $("f-dataset"),
      fId = $("f-id");
  D.agents.forEach(function (a, i) { option(fAgent, i, a); });
  D.labels.forEach(function (l, i) { option(fGold, i, l); option(fPred, i, l); });
  if (ds) D.datasets.forEach(function (d, i) { option(fDs, i, d); }); else $("f-dataset-wrap").hidden = true;

  // role filter values: a role name, or "potential_any" (potential or successful sabotage)
  function roleMatch(code, want) {
    if (want === "potential_any") return code >= ROLE.potential_sabotage;
    return code === ROLE[want];
  }
  function apply() {
    var want = fRole.value, agent = fAgent.value === "" ? -1 : +fAgent.value;
    var g = fGold.value === "" ? -2 : +fGold.value, p = fPred.value === "" ? -2 : +fPred.value;
    var d = fDs.value === "" ? -1 : +fDs.value, q = fId.value.trim().toLowerCase();
    count = 0;
    for (var i = 0; i < n; i++) {
      if (g !== -2 && gold[i] !== g) continue;
      if (p !== -2 && pred[i] !== p) continue;
      if (d !== -1 && ds[i] !== d) continue;
      if (q && D.id[i].toLowerCase().indexOf(q) < 0) continue;
      if (want) {
        var ok = false;
        if (agent >= 0) ok = roleMatch(role[i * m + agent], want);
        else for (var j = 0; j < m && !ok; j++) ok = roleMatch(role[i * m + j], want);
        if (!ok) continue;
      }
      visible[count++] = i;
    }
    page = 0;
    var c = $("ib-count");
    c.dataset.count = count;
    c.textContent = count.toLocaleString("en") + " of " + n.toLocaleString("en") + " instances";
    render();
  }
  function label(i) { return i >= 0 ? D.labels[i] : "–"; }
  function candidates(i, j) {
    var k = i * m + j, out = [];
    for (var c = D.cand_offset[k]; c < D.cand_offset[k + 1]; c++) out.push([D.cand_label[c], D.cand_conf[c]]);
    return out;
  }
  function roleBadge(i, j) {
    var r = D.roles[role[i * m + j]], cands = candidates(i, j);
    var b = el("span", "role role-" + r,
      D.agents[j] + ": " + (cands.length ? label(cands[0][0]) + " " + cands[0][1] : "—"));
    b.title = D.agents[j] + " " + r.replace(/_/g, " ");
    return b;
  }
  function detail(i) {
    var tr = el("tr", "detail"), td = el("td");
    td.colSpan = 6;
    var fused = el("div"), fl = [];
    for (var c = D.fused_offset[i]; c < D.fused_offset[i + 1]; c++) fl.push(label(D.fused_label[c]) + " " + (D.fused_p[c] / 1000).toFixed(3));
    fused.appendChild(el("strong", null, "Fused ranking (p): "));
    fused.appendChild(document.createTextNode(fl.join(" › ") || "none"));
    td.appendChild(fused);
    var box = el("div", "agents");
    for (var j = 0; j < m; j++) {
      var a = el("div", "agent"), r = D.roles[role[i * m + j]], qv = D.quality[i * m + j];
      a.appendChild(el("strong", null, D.agents[j] + " "));
      a.appendChild(el("span", "role role-" + r, r.replace(/_/g, " ")));
      a.appendChild(el("div", "note", "quality: " + (qv === null ? "n/a" : qv)));
      var ol = el("ol");
      candidates(i, j).forEach(function (cand) {
        ol.appendChild(el("li", cand[0] === gold[i] ? "gold" : null, label(cand[0]) + " — " + cand[1]));
      });
      a.appendChild(ol);
      var rawSlot = el("div", "raw-slot");
      a.appendChild(rawSlot);
      box.appendChild(a);
    }
    td.appendChild(box);
    var descSlot = el("div", "desc-slot");
    td.appendChild(descSlot);
    tr.appendChild(td);
    withText(function () {
      if (textState === "failed") { descSlot.appendChild(el("p", "note", "descriptors and raw answers could not be unpacked in this browser")); return; }
      if (!T) return;
      var slots = box.querySelectorAll(".raw-slot");
      for (var j = 0; j < m; j++) {
        var raw = T.raw && T.raw[i] && T.raw[i][D.agents[j]];
        if (!raw) continue;
        var det = el("details", "raw"); det.appendChild(el("summary", null, "raw answer")); det.appendChild(el("pre", null, raw));
        slots[j].appendChild(det);
      }
      var desc = T.descriptors && T.descriptors[i];
      if (desc) {
        // words first (open); the many numeric features collapsed, in columns
        var NUM = /^\s*[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?\s*$/, words = [], numbers = [];
        Object.keys(desc).forEach(function (k) { (NUM.test(String(desc[k])) ? numbers : words).push(k); });
        function list(keys, cls) {
          var dl = el("dl", cls);
          keys.forEach(function (k) { dl.appendChild(el("dt", null, k)); dl.appendChild(el("dd", null, desc[k])); });
          return dl;
        }
        var dd = el("details", "descriptors"); dd.open = true; dd.appendChild(el("summary", null, "descriptors"));
        dd.appendChild(list(words, null));
        if (numbers.length) {
          var nd = el("details", "numeric"); nd.appendChild(el("summary", null, numbers.length + " numeric descriptors"));
          nd.appendChild(list(numbers, "num")); dd.appendChild(nd);
        }
        descSlot.appendChild(dd);
      }
    });
    return tr;
  }
  function render() {
    var body = $("ib-body"), pages = Math.max(1, Math.ceil(count / PAGE));
    body.textContent = "";
    for (var r = page * PAGE; r < Math.min(count, (page + 1) * PAGE); r++) {
      var i = visible[r], tr = el("tr", "inst");
      tr.dataset.row = i;
      tr.appendChild(el("td", null, D.id[i]));
      tr.appendChild(el("td", null, ds ? D.datasets[ds[i]] : ""));
      tr.appendChild(el("td", null, label(gold[i])));
      tr.appendChild(el("td", pred[i] === gold[i] ? "hit" : "miss", label(pred[i])));
      tr.appendChild(el("td", "num", D.rank[i] || "–"));
      var roles = el("td");
      for (var j = 0; j < m; j++) roles.appendChild(roleBadge(i, j));
      tr.appendChild(roles);
      body.appendChild(tr);
    }
    $("ib-page").textContent = "page " + (page + 1) + " of " + pages;
    $("ib-prev").disabled = page === 0;
    $("ib-next").disabled = page >= pages - 1;
  }
  $("ib-body").addEventListener("click", function (ev) {
    var tr = ev.target.closest("tr.inst");
    if (!tr) return;
    var next = tr.nextElementSibling;
    if (next && next.classList.contains("detail")) { next.remove(); return; }
    tr.after(detail(+tr.dataset.row));
  });
  $("ib-prev").addEventListener("click", function () { if (page > 0) { page--; render(); } });
  $("ib-next").addEventListener("click", function () { if ((page + 1) * PAGE < count) { page++; render(); } });
  [fRole, fAgent, fGold, fPred, fDs].forEach(function (s) { s.addEventListener("change", apply); });
  var timer = null;
  fId.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(apply, 150); });
  apply();
})();
