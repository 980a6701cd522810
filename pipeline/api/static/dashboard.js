// The forecast dashboard: plain SVG drawn from this API's JSON endpoints, updated by /ws.
// No library, no build step. Times are shown in UTC.
(() => {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";
  const HEIGHT = 440;
  const MARGIN = { left: 78, right: 18, top: 18, bottom: 46 };
  const PALETTE = ["#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d", "#dc2626",
    "#4b5563", "#ca8a04", "#0d9488", "#9333ea", "#ea580c"];
  const MINUTE = 60e3, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
  const TICKS = [HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY,
    30 * DAY, 91 * DAY];
  const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

  const $ = (id) => document.getElementById(id);
  const state = {
    key: sessionStorage.getItem("dashboardApiKey") || "",
    index: {},        // series name -> {coin, vs, timeframe, champion, models: [summary]}
    series: null,     // the series shown
    view: null,       // what the chart shows now
    others: new Set(),
    otherCache: {},   // "series/model/version/issued_at" -> [{t, y}]
    ws: null,
    wsRetry: 0,
    loads: 0,
    updates: 0,
    firstRender: true,
  };

  // -- formatting ---------------------------------------------------------------------------
  const pad = (n) => String(n).padStart(2, "0");
  function fmtTime(ms, withYear) {
    const d = new Date(ms);
    const day = `${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]}` + (withYear ? ` ${d.getUTCFullYear()}` : "");
    return `${day} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  }
  function fmtPrice(v) {
    if (v === null || v === undefined || !Number.isFinite(v)) return "–";
    const digits = Math.abs(v) >= 1000 ? 0 : Math.abs(v) >= 1 ? 2 : 5;
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function fmtTick(v, step) {
    const digits = step >= 1 ? (Number.isInteger(step) ? 0 : 1) : Math.min(8, Math.ceil(-Math.log10(step)) + 1);
    return v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  function fmtAge(seconds) {
    if (seconds === null || seconds === undefined) return "–";
    const s = Math.max(0, Math.round(seconds));
    if (s < 90) return `${s} s`;
    if (s < 90 * 60) return `${Math.round(s / 60)} min`;
    if (s < 48 * 3600) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
    return `${(s / 86400).toFixed(1)} days`;
  }
  function fmtNumber(v, digits = 3) {
    if (v === null || v === undefined) return "–";
    if (typeof v !== "number") return String(v);
    return Number.isInteger(v) ? v.toLocaleString("en-US") : v.toFixed(digits);
  }
  const fmtPct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
  const iso = (ms) => fmtTime(ms, true) + " UTC";

  // -- talking to the API -------------------------------------------------------------------
  class Failure extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, body) {
    const headers = {};
    if (state.key) headers["X-API-Key"] = state.key;
    const options = { headers };
    if (body !== undefined) {
      options.method = "POST";
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    const data = await response.json().catch(() => null);
    if (response.status === 401) {
      $("keybox").hidden = false;
      throw new Failure(401, "this API needs a key (API_KEY): enter it above");
    }
    if (!response.ok) {
      throw new Failure(response.status, (data && data.message) || `${path}: HTTP ${response.status}`);
    }
    return data;
  }
  function say(text) {
    const box = $("message");
    box.textContent = text || "";
    box.hidden = !text;
  }

  // -- series picker ------------------------------------------------------------------------
  async function loadIndex() {
    const data = await api("/api/v1/models");
    const index = {};
    for (const m of data.models) {
      const entry = index[m.series] || (index[m.series] = {
        coin: m.coin, vs: m.vs_currency, timeframe: m.timeframe, champion: null, models: [],
      });
      entry.models.push(m);
      if (m.is_champion) entry.champion = m;
    }
    state.index = index;
    return index;
  }
  function servedSeries() {
    return Object.keys(state.index).filter((name) => state.index[name].champion).sort();
  }
  function fillPicker() {
    const names = servedSeries();
    const pairs = [...new Set(names.map((n) => `${state.index[n].coin}|${state.index[n].vs}`))];
    const coin = $("coin"), tf = $("timeframe");
    const current = state.index[state.series];
    coin.replaceChildren(...pairs.map((pair) => {
      const [c, vs] = pair.split("|");
      const option = new Option(`${c} (${vs.toUpperCase()})`, pair);
      option.selected = current && current.coin === c && current.vs === vs;
      return option;
    }));
    const [c, vs] = coin.value.split("|");
    const frames = names.filter((n) => state.index[n].coin === c && state.index[n].vs === vs);
    tf.replaceChildren(...frames.map((n) => {
      const option = new Option(state.index[n].timeframe, n);
      option.selected = n === state.series;
      return option;
    }));
  }
  function pickFromControls(changedCoin) {
    const [c, vs] = $("coin").value.split("|");
    let name = $("timeframe").value;
    if (changedCoin || !state.index[name] || state.index[name].coin !== c) {
      name = servedSeries().find((n) => state.index[n].coin === c && state.index[n].vs === vs);
    }
    return name;
  }

  // -- loading a series ---------------------------------------------------------------------
  function query(info) {
    return `coin=${encodeURIComponent(info.coin)}&vs_currency=${encodeURIComponent(info.vs)}` +
      `&timeframe=${encodeURIComponent(info.timeframe)}`;
  }
  async function loadSeries(name) {
    const info = state.index[name];
    if (!info || !info.champion) throw new Failure(404, `${name} has no champion`);
    const ticket = ++state.loads;
    const horizon = info.champion.horizon;
    const limit = Math.min(1000, Math.max(60, 3 * horizon));
    const [predict, latest, card] = await Promise.all([
      api("/api/v1/predict", { coin: info.coin, vs_currency: info.vs, timeframe: info.timeframe, steps: horizon }),
      api(`/data/latest?coin=${encodeURIComponent(info.coin)}&timeframe=${encodeURIComponent(info.timeframe)}&limit=${limit}`)
        .catch((err) => ({ failed: err.message })),
      api(`/api/v1/model-card?${query(info)}`),
    ]);
    if (ticket !== state.loads) return;  // a newer load started meanwhile
    state.view = { name, info, predict, latest, card };
    renderAll();
    loadAccuracy(name, info, card);
    if (state.others.size) loadOthers();
  }
  async function loadAccuracy(name, info, card) {
    const panel = $("accuracy");
    if (!card.accuracy_url) { panel.hidden = true; return; }
    try {
      const data = await api(`${card.accuracy_url}?${query(info)}`);
      const rows = Array.isArray(data) ? data : (data && data.rows) || [];
      if (state.series !== name || !rows.length) { panel.hidden = true; return; }
      genericTable($("accuracy-table"), rows);
      panel.hidden = false;
    } catch (err) {
      panel.hidden = true;
    }
  }
  async function loadOthers() {
    const view = state.view;
    if (!view) return;
    const wanted = view.info.models.filter((m) => state.others.has(m.model) && !m.is_champion);
    const missing = wanted.filter((m) => !(otherKey(view.name, m) in state.otherCache));
    if (missing.length) {
      const answer = await api("/api/v1/predict/batch", {
        requests: missing.map((m) => ({
          coin: view.info.coin, vs_currency: view.info.vs, timeframe: view.info.timeframe,
          model: m.model, steps: m.horizon,
        })),
      });
      answer.results.forEach((item, i) => {
        state.otherCache[otherKey(view.name, missing[i])] = item.ok
          ? item.result.forecasts.map((f) => ({ t: Date.parse(f.timestamp), y: f.mean }))
          : [];
      });
    }
    if (state.view === view) drawChart();
  }
  const otherKey = (name, m) => `${name}/${m.model}/${m.version}/${m.issued_at}`;

  // -- rendering ----------------------------------------------------------------------------
  function renderAll() {
    const { info, predict } = state.view;
    $("title").textContent = `${info.coin} / ${info.vs.toUpperCase()} · ${info.timeframe} · ` +
      `champion ${predict.model}`;
    $("issued").textContent = `issued at ${iso(Date.parse(predict.freshness.issued_at))} · ` +
      `forecast from ${iso(Date.parse(predict.freshness.origin))}`;
    drawChart();
    renderOthers();
    renderHealth();
    renderCard();
    renderTrust();
    document.body.dataset.series = state.view.name;
    document.body.dataset.state = "ready";
    if (state.firstRender) {
      state.firstRender = false;
      document.body.dataset.renderMs = String(Math.round(performance.now()));
    }
  }

  function el(name, attrs, parent) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }
  function niceStep(span, count) {
    const raw = span / Math.max(1, count);
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const norm = raw / mag;
    return (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 2.5 ? 2.5 : norm <= 5 ? 5 : 10) * mag;
  }
  function series() {
    const { predict, latest } = state.view;
    const history = (latest && latest.rows ? latest.rows : []).map((r) => ({ t: Date.parse(r.ds), y: r.price }));
    const origin = { t: Date.parse(predict.freshness.origin), y: predict.last_price };
    const fan = predict.forecasts.map((f) => ({
      t: Date.parse(f.timestamp), mean: f.mean, l80: f.lower_80, u80: f.upper_80, l95: f.lower_95, u95: f.upper_95,
    }));
    const others = state.view.info.models
      .filter((m) => state.others.has(m.model) && !m.is_champion)
      .map((m) => ({ model: m.model, color: colorOf(m.model), points: state.otherCache[otherKey(state.view.name, m)] || [] }))
      .filter((o) => o.points.length);
    return { history, origin, fan, others, now: Date.parse(predict.prediction_timestamp) };
  }
  function colorOf(model) {
    const names = state.view.info.models.map((m) => m.model).sort();
    return PALETTE[Math.max(0, names.indexOf(model)) % PALETTE.length];
  }

  function drawChart() {
    const svg = $("chart");
    const width = Math.max(320, svg.clientWidth || svg.parentNode.clientWidth || 900);
    svg.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    svg.replaceChildren();
    const d = series();
    const start = d.origin;
    const times = [...d.history.map((p) => p.t), start.t, ...d.fan.map((p) => p.t)];
    const values = [...d.history.map((p) => p.y), start.y,
      ...d.fan.flatMap((p) => [p.l95, p.u95, p.mean].filter(Number.isFinite)),
      ...d.others.flatMap((o) => o.points.map((p) => p.y))];
    const t0 = Math.min(...times), t1 = Math.max(...times);
    let y0 = Math.min(...values), y1 = Math.max(...values);
    const padY = (y1 - y0) * 0.04 || Math.abs(y1) * 0.01 || 1;
    y0 -= padY; y1 += padY;
    const step = niceStep(y1 - y0, 6);
    y0 = Math.floor(y0 / step) * step; y1 = Math.ceil(y1 / step) * step;
    const plotW = width - MARGIN.left - MARGIN.right, plotH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + ((t - t0) / (t1 - t0 || 1)) * plotW;
    const y = (v) => MARGIN.top + (1 - (v - y0) / (y1 - y0 || 1)) * plotH;
    const pts = (list, fy) => list.map((p) => `${x(p.t).toFixed(1)},${fy(p).toFixed(1)}`).join(" ");

    // grid and axes
    const grid = el("g", { class: "grid" }, svg), axis = el("g", { class: "axis" }, svg);
    for (let v = y0; v <= y1 + step / 2; v += step) {
      el("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(v), y2: y(v) }, grid);
      const label = el("text", { x: MARGIN.left - 8, y: y(v) + 4, "text-anchor": "end" }, axis);
      label.textContent = fmtTick(v, step);
    }
    const tick = TICKS.find((s) => (t1 - t0) / s <= 9) || TICKS[TICKS.length - 1];
    const firstTick = Math.ceil(t0 / tick) * tick;
    for (let t = firstTick; t <= t1; t += tick) {
      el("line", { x1: x(t), x2: x(t), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }, grid);
      const label = el("text", { x: x(t), y: HEIGHT - MARGIN.bottom + 16, "text-anchor": "middle" }, axis);
      const dt = new Date(t);
      label.textContent = tick < DAY && (dt.getUTCHours() || dt.getUTCMinutes())
        ? `${pad(dt.getUTCHours())}:${pad(dt.getUTCMinutes())}`
        : `${dt.getUTCDate()} ${MONTHS[dt.getUTCMonth()]}`;
    }
    el("line", { x1: MARGIN.left, x2: width - MARGIN.right, y1: HEIGHT - MARGIN.bottom, y2: HEIGHT - MARGIN.bottom }, axis);
    el("line", { x1: MARGIN.left, x2: MARGIN.left, y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }, axis);
    const yTitle = el("text", { class: "axis-title", transform: `translate(14 ${MARGIN.top + plotH / 2}) rotate(-90)`, "text-anchor": "middle" }, axis);
    yTitle.textContent = `price (${state.view.info.vs.toUpperCase()})`;
    const xTitle = el("text", { class: "axis-title", x: MARGIN.left + plotW / 2, y: HEIGHT - 8, "text-anchor": "middle" }, axis);
    xTitle.textContent = "time (UTC)";

    // the fan: 95% band, 80% band, median from the origin
    const fan = [{ t: start.t, mean: start.y, l80: start.y, u80: start.y, l95: start.y, u95: start.y }, ...d.fan];
    const band = (lo, hi) => `M${pts(fan, (p) => y(p[hi]))} L${pts([...fan].reverse(), (p) => y(p[lo]))} Z`;
    el("path", { class: "band95", d: band("l95", "u95") }, svg);
    el("path", { class: "band80", d: band("l80", "u80") }, svg);
    if (d.history.length) el("polyline", { class: "price", points: pts(d.history, (p) => y(p.y)) }, svg);
    for (const other of d.others) {
      el("polyline", {
        class: "other", "data-model": other.model, stroke: other.color,
        points: pts([{ t: start.t, y: start.y }, ...other.points], (p) => y(p.y)),
      }, svg);
    }
    el("polyline", { class: "median", points: pts(fan, (p) => y(p.mean)) }, svg);
    const dots = el("g", { class: "points" }, svg);
    for (const p of d.fan) el("circle", { class: "pt", cx: x(p.t), cy: y(p.mean), r: 2.6 }, dots);

    // origin (issue) and now markers
    el("line", { class: "origin", x1: x(start.t), x2: x(start.t), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }, svg);
    if (d.now >= t0 && d.now <= t1) {
      el("line", { class: "now", x1: x(d.now), x2: x(d.now), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom }, svg);
      const now = el("text", { class: "marker-label", x: x(d.now) + 4, y: MARGIN.top + 12 }, svg);
      now.textContent = "now";
    }
    const originLabel = el("text", { class: "marker-label", x: x(start.t) - 4, y: HEIGHT - MARGIN.bottom - 6, "text-anchor": "end" }, svg);
    originLabel.textContent = "last price";

    svg.dataset.series = state.view.name;
    svg.dataset.steps = String(d.fan.length);
    svg.dataset.history = String(d.history.length);
    svg.dataset.model = state.view.predict.model;
    svg.dataset.version = state.view.predict.model_version;
    svg.dataset.issuedAt = state.view.predict.freshness.issued_at;
    svg.dataset.others = String(d.others.length);
    hover(svg, d, x, y, t0, t1);
    renderLegend(d);
  }

  function hover(svg, d, x, y, t0, t1) {
    const cross = el("line", { class: "cross", y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, visibility: "hidden" }, svg);
    const dots = el("g", {}, svg);
    const hit = el("rect", {
      class: "hit", x: MARGIN.left, y: MARGIN.top,
      width: Math.max(0, x(t1) - MARGIN.left), height: HEIGHT - MARGIN.top - MARGIN.bottom,
    }, svg);
    const tip = $("tooltip");
    const stops = [...d.history.map((p) => ({ t: p.t, price: p.y })),
      ...d.fan.map((p) => ({ t: p.t, fan: p }))].sort((a, b) => a.t - b.t);
    const leave = () => { tip.hidden = true; cross.setAttribute("visibility", "hidden"); dots.replaceChildren(); };
    hit.addEventListener("pointerleave", leave);
    hit.addEventListener("pointermove", (event) => {
      const box = svg.getBoundingClientRect();
      const scale = box.width / (svg.viewBox.baseVal.width || box.width);
      const px = (event.clientX - box.left) / scale;
      const t = t0 + ((px - MARGIN.left) / (x(t1) - MARGIN.left)) * (t1 - t0);
      let best = stops[0];
      for (const s of stops) if (Math.abs(s.t - t) < Math.abs(best.t - t)) best = s;
      if (!best) return leave();
      cross.setAttribute("x1", x(best.t)); cross.setAttribute("x2", x(best.t));
      cross.setAttribute("visibility", "visible");
      dots.replaceChildren();
      const lines = [iso(best.t)];
      if (best.price !== undefined) {
        lines.push(`price ${fmtPrice(best.price)}`);
        el("circle", { class: "dot", cx: x(best.t), cy: y(best.price), r: 4, fill: "#111827" }, dots);
      } else {
        const f = best.fan;
        lines.push(`median ${fmtPrice(f.mean)}`, `80% ${fmtPrice(f.l80)} – ${fmtPrice(f.u80)}`,
          `95% ${fmtPrice(f.l95)} – ${fmtPrice(f.u95)}`);
        el("circle", { class: "dot", cx: x(best.t), cy: y(f.mean), r: 4, fill: "#1d4ed8" }, dots);
        for (const other of d.others) {
          const p = other.points.find((q) => q.t === best.t);
          if (p) lines.push(`${other.model} ${fmtPrice(p.y)}`);
        }
      }
      tip.replaceChildren(...lines.flatMap((line, i) => {
        const node = document.createElement(i === 0 ? "b" : "span");
        node.textContent = line;
        return i ? [document.createElement("br"), node] : [node];
      }));
      tip.hidden = false;
      const left = x(best.t) * scale + 12;
      tip.style.left = `${Math.min(left, box.width - tip.offsetWidth - 4)}px`;
      tip.style.top = `${MARGIN.top * scale + 8}px`;
    });
  }

  function renderLegend(d) {
    const legend = $("legend");
    const key = (cls, text, color) => {
      const span = document.createElement("span");
      span.className = "key";
      const sw = document.createElement("span");
      sw.className = `swatch ${cls}`;
      if (color) sw.style.borderTopColor = color;
      span.append(sw, document.createTextNode(text));
      return span;
    };
    legend.replaceChildren(
      key("price", "price"),
      key("median", `median (${state.view.predict.model})`),
      key("band80", "80% band"),
      key("band95", "95% band"),
      key("now", "now"),
      ...d.others.map((o) => key("other", `${o.model} median`, o.color)),
    );
  }

  function renderOthers() {
    const box = $("others");
    const others = state.view.info.models.filter((m) => !m.is_champion).map((m) => m.model).sort();
    const title = document.createElement("span");
    title.className = "title";
    title.textContent = others.length ? "Other models' medians:" : "No other models are served.";
    box.replaceChildren(title, ...others.map((model) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox";
      input.value = model;
      input.checked = state.others.has(model);
      input.addEventListener("change", () => {
        if (input.checked) state.others.add(model); else state.others.delete(model);
        loadOthers().catch((err) => say(err.message));
      });
      label.append(input, document.createTextNode(model));
      return label;
    }));
  }

  function facts(dl, rows) {
    dl.replaceChildren(...rows.flatMap(([name, value, badge]) => {
      const dt = document.createElement("dt");
      dt.textContent = name;
      const dd = document.createElement("dd");
      dd.textContent = value;
      if (badge) {
        const b = document.createElement("span");
        b.className = `badge ${badge}`;
        b.textContent = badge;
        dd.append(" ", b);
      }
      return [dt, dd];
    }));
  }

  function renderHealth() {
    const { predict, card, latest } = state.view;
    const f = predict.freshness;
    const data = card.data;
    const issue = f.steps_available === 0 ? "expired" : f.stale ? "stale" : "ok";
    facts($("health"), [
      ["Data", data.last_ds ? `last price ${iso(Date.parse(data.last_ds))}` : (latest.failed || "no data"), data.status],
      ["Data age", fmtAge(data.age_seconds)],
      ["Forecast issue", `issued ${iso(Date.parse(f.issued_at))}`, issue],
      ["Issue age", `${fmtAge(f.age_seconds)} (${f.age_periods} periods of ${state.view.info.timeframe})`],
      ["Steps ahead", `${f.steps_available} of ${predict.horizon}`],
    ]);
  }

  function renderCard() {
    const { card } = state.view;
    const c = card.champion;
    facts($("card"), [
      ["Champion", c.model],
      ["Version", c.version],
      ["Trained", iso(Date.parse(c.trained_at))],
      ["Issued", iso(Date.parse(c.issued_at))],
      ["Promoted", c.promoted_at ? iso(Date.parse(c.promoted_at)) : "–"],
    ]);
    $("reason-text").textContent = c.reason || "No reason was recorded with the promotion.";
    const table = $("backtest");
    const bt = card.backtest;
    const champ = bt && bt.rows.find((r) => r.is_champion);
    const naive = bt && bt.rows.find((r) => r.model === "naive");
    if (!champ) {
      table.replaceChildren();
      $("protocol").textContent = "No backtest figures are recorded with this version.";
      $("all-models").hidden = true;
      return;
    }
    const metrics = [["MASE", "mase", fmtNumber], ["WIS", "wis", fmtPrice], ["Winkler 95", "winkler_95", fmtPrice],
      ["80% coverage", "coverage_80", fmtPct], ["95% coverage", "coverage_95", fmtPct]];
    const head = ["", champ.model, ...(naive && naive !== champ ? ["naive", "ratio"] : [])];
    const rows = metrics.map(([label, keyName, fmt]) => {
      const cells = [label, fmt(champ.figures[keyName])];
      if (naive && naive !== champ) {
        const ratio = champ.vs_naive[keyName];
        cells.push(fmt(naive.figures[keyName]), ratio === undefined ? "" : ratio === null ? "–" : `${ratio.toFixed(3)}×`);
      }
      return cells;
    });
    fillTable(table, head, rows, (cells, tr) => {
      const ratio = parseFloat(cells[3]);
      if (Number.isFinite(ratio) && ratio !== 1) tr.lastChild.className = ratio < 1 ? "better" : "worse";
    });
    const p = bt.protocol;
    $("protocol").textContent = `Selection backtest: ${p.origins ?? "?"} origins, ${p.horizon ?? "?"}-step horizon, ` +
      `${p.window ?? ""} window of ${p.train_window ?? "?"} points. Lower MASE, WIS and Winkler are better; ` +
      "ratios below 1 beat naive.";
    $("all-models").hidden = false;
    fillTable($("backtest-all"), ["model", "MASE", "WIS ×naive", "cov 80", "cov 95"],
      bt.rows.map((r) => [r.model, fmtNumber(r.figures.mase), r.vs_naive.wis === null ? "–" : r.vs_naive.wis.toFixed(3),
        fmtPct(r.figures.coverage_80), fmtPct(r.figures.coverage_95)]),
      (cells, tr, i) => { if (bt.rows[i].is_champion) tr.className = "champion"; });
  }

  function fillTable(table, head, rows, decorate) {
    const thead = document.createElement("tr");
    for (const h of head) { const th = document.createElement("th"); th.textContent = h; thead.append(th); }
    table.replaceChildren(thead, ...rows.map((cells, i) => {
      const tr = document.createElement("tr");
      for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
      if (decorate) decorate(cells, tr, i);
      return tr;
    }));
  }
  function genericTable(table, rows) {
    const keys = [...new Set(rows.flatMap((r) => Object.keys(r).filter((k) => r[k] === null || typeof r[k] !== "object")))];
    fillTable(table, keys, rows.map((r) => keys.map((k) => fmtNumber(r[k]))));
  }

  function renderTrust() {
    const trust = state.view.predict.trust;
    const panel = $("trust");
    if (!trust || typeof trust !== "object") { panel.hidden = true; return; }
    const rows = Object.entries(trust).filter(([, v]) => v === null || typeof v !== "object")
      .map(([k, v]) => [k, fmtNumber(v), k === "status" ? String(v) : undefined]);
    facts($("trust-list"), rows);
    panel.hidden = false;
  }

  // -- the live feed ------------------------------------------------------------------------
  function setLive(text, cls) {
    const badge = $("live");
    badge.textContent = `live feed: ${text}`;
    badge.className = `badge ${cls}`;
  }
  function connect() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const url = `${scheme}//${location.host}/ws` + (state.key ? `?api_key=${encodeURIComponent(state.key)}` : "");
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.addEventListener("open", () => {
      state.wsRetry = 0;
      setLive("connected", "live");
      if (state.series) ws.send(JSON.stringify({ action: "subscribe", series: [state.series] }));
    });
    ws.addEventListener("message", (event) => onEvent(JSON.parse(event.data)));
    ws.addEventListener("close", () => {
      if (state.ws !== ws) return;
      setLive("reconnecting", "off");
      const wait = Math.min(30000, 1000 * 2 ** state.wsRetry++);
      setTimeout(connect, wait);
    });
  }
  function resubscribe(previous, next) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (previous && previous !== next) ws.send(JSON.stringify({ action: "unsubscribe", series: [previous] }));
    if (next) ws.send(JSON.stringify({ action: "subscribe", series: [next] }));
  }
  async function onEvent(msg) {
    if (msg.type === "heartbeat") {
      setLive(`connected · ${fmtTime(Date.parse(msg.at)).split(" ").pop()} UTC`, "live");
    } else if (msg.type === "subscribed") {
      document.body.dataset.subscribed = msg.series.join(",");
    } else if (msg.type === "forecast" || msg.type === "health") {
      if (msg.type === "forecast") await loadIndex();
      if (msg.series === state.series) {
        await loadSeries(state.series);
        state.updates += 1;
        document.body.dataset.updates = String(state.updates);
        document.body.dataset.lastEvent = `${msg.type}:${msg.change || msg.status}`;
        const panel = document.querySelector(".chart-panel");
        panel.classList.remove("flash");
        void panel.offsetWidth;
        panel.classList.add("flash");
      }
    } else if (msg.type === "error" && msg.error !== "unknown_series") {
      say(`live feed: ${msg.message}`);
    }
  }

  // -- start --------------------------------------------------------------------------------
  async function show(name) {
    const previous = state.series;
    state.series = name;
    if (previous !== name) state.others.clear();
    history.replaceState(null, "", `#${name}`);
    fillPicker();
    resubscribe(previous, name);
    await loadSeries(name);
  }
  async function start() {
    say("");
    try {
      await loadIndex();
      const names = servedSeries();
      if (!names.length) {
        $("title").textContent = "No forecasts are served yet";
        say("No champion is loaded: run the pipeline (make pipeline), then reload the API.");
        document.body.dataset.state = "empty";
        return;
      }
      const wanted = decodeURIComponent(location.hash.slice(1));
      await show(names.includes(wanted) ? wanted : names[0]);
      if (!state.ws) connect();
    } catch (err) {
      document.body.dataset.state = "error";
      say(err.message);
    }
  }
  $("coin").addEventListener("change", () => show(pickFromControls(true)).catch((err) => say(err.message)));
  $("timeframe").addEventListener("change", () => show(pickFromControls(false)).catch((err) => say(err.message)));
  $("keybox").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("apikey").value.trim();
    sessionStorage.setItem("dashboardApiKey", state.key);
    $("keybox").hidden = true;
    if (state.ws) { const old = state.ws; state.ws = null; old.close(); }
    start();
  });
  let resizeTimer = 0;
  window.addEventListener("resize", () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(() => { if (state.view) drawChart(); }, 150);
  });
  start();
})();
