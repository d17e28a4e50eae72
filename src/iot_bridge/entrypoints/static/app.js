// iot-bridge board: reads GET /board once, then follows GET /stream (server-sent events).
// The page itself holds no data. With BRIDGE_API_TOKEN set, the token comes from the URL
// fragment (#token=..., never sent to the server) or is asked once and kept for the tab
// (sessionStorage). Nothing here changes the bridge's config: tuning only replays.
"use strict";
(function () {
  const TOKEN_KEY = "iot-bridge-token";
  const RESYNC_MS = 30000;
  const MIN_SPAN_S = 120;
  const RUNNING = new Set(["standby", "working", "stopping"]);
  const $ = (id) => document.getElementById(id);

  let token = null;
  let offset = 0; // server clock minus this browser's clock (s)
  let windowS = 3600;
  let source = null;
  let generation = 0; // a newer connect() makes older callbacks stale
  const machines = new Map();
  let sessions = [];
  let tuning = null; // {deviceId, result}
  let drawPending = false;

  class Refused extends Error {}

  // --- time and formatting -------------------------------------------------------

  const now = () => Date.now() / 1000 + offset;
  const parseIso = (iso) => (iso ? Date.parse(iso) / 1000 : null);
  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "–";
    s = Math.max(0, Math.round(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return h + " h " + String(m).padStart(2, "0") + " min";
    if (m) return m + " min " + String(sec).padStart(2, "0") + " s";
    return sec + " s";
  }
  function clockTime(ts) {
    if (ts === null || ts === undefined) return "–";
    return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }
  function watts(w) {
    if (w === null || w === undefined) return "–";
    return w >= 100 ? w.toFixed(0) : w.toFixed(1);
  }
  function energy(wh) {
    return wh === null || wh === undefined ? "–" : wh.toFixed(wh >= 100 ? 0 : 2) + " Wh";
  }
  const shownState = (m) => (m.online === false ? "offline" : m.state);

  // --- token -----------------------------------------------------------------------

  function tokenFromFragment() {
    const match = location.hash.match(/(?:^#|&)token=([^&]*)/);
    if (!match) return;
    try {
      sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    } catch (e) { /* storage off: the token lives in memory only */ }
    token = decodeURIComponent(match[1]);
    history.replaceState(null, "", location.pathname + location.search); // out of sight
  }

  function askToken(refused) {
    closeStream();
    machines.clear();
    $("machines").textContent = "";
    $("board").hidden = true;
    $("token-form").hidden = false;
    $("token-error").hidden = !refused;
    setLink(refused ? "refused" : "token", refused ? "token refused" : "token needed");
    $("token-input").focus();
  }

  $("token-entry").addEventListener("submit", (e) => {
    e.preventDefault();
    token = $("token-input").value.trim();
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (err) { /* memory only */ }
    $("token-input").value = "";
    connect();
  });

  // --- talking to the bridge ---------------------------------------------------------

  async function api(path) {
    const response = await fetch(path, {
      headers: token ? { Authorization: "Bearer " + token } : {},
      cache: "no-store",
    });
    if (response.status === 401) throw new Refused();
    const body = await response.json();
    if (!response.ok) throw new Error(body.message || "HTTP " + response.status);
    return body;
  }

  function setLink(status, text) {
    const link = $("link");
    link.dataset.status = status;
    link.textContent = text;
  }

  async function connect() {
    const mine = ++generation;
    closeStream();
    try {
      const auth = await api("/board/auth");
      if (mine !== generation) return;
      if (auth.token_required && !token) return askToken(false);
      const snapshot = await api("/board");
      if (mine !== generation) return;
      $("token-form").hidden = true;
      $("board").hidden = false;
      applySnapshot(snapshot);
      openStream(mine);
    } catch (err) {
      if (mine !== generation) return;
      if (err instanceof Refused) return askToken(true);
      setLink("lost", "bridge unreachable, retrying");
      setTimeout(() => { if (mine === generation) connect(); }, 2000);
    }
  }

  function closeStream() {
    if (source) source.close();
    source = null;
  }

  function openStream(mine) {
    const url = "/stream" + (token ? "?token=" + encodeURIComponent(token) : "");
    source = new EventSource(url);
    source.addEventListener("open", () => setLink("live", "live"));
    source.addEventListener("snapshot", (e) => applySnapshot(JSON.parse(e.data)));
    source.addEventListener("state", (e) => onState(JSON.parse(e.data)));
    source.addEventListener("reading", (e) => onReading(JSON.parse(e.data)));
    source.addEventListener("event", (e) => onEvent(JSON.parse(e.data)));
    source.addEventListener("health", (e) => renderHealth(JSON.parse(e.data)));
    source.addEventListener("error", () => {
      if (mine !== generation) return;
      if (source && source.readyState === EventSource.CLOSED) {
        // Refused (a new token?) or gone for good: start over, which asks if need be.
        setLink("lost", "reconnecting");
        setTimeout(() => { if (mine === generation) connect(); }, 2000);
      } else {
        setLink("lost", "reconnecting"); // EventSource retries by itself; a snapshot follows
      }
    });
  }

  // --- the model ---------------------------------------------------------------------

  function segmentClass(state, previous) {
    if (state === "working" || state === "standby") return state;
    if (state === "stopping") return previous;
    return null;
  }

  function applySnapshot(snapshot) {
    offset = snapshot.now - Date.now() / 1000;
    windowS = snapshot.window_s;
    const seen = new Set();
    for (const data of snapshot.machines) {
      seen.add(data.device_id);
      let m = machines.get(data.device_id);
      if (!m) {
        m = { el: makeCard(data.device_id) };
        machines.set(data.device_id, m);
      }
      Object.assign(m, data);
      m.segClass = segmentClass(data.state, null);
      m.segSince = snapshot.now;
      m.todayWorking = data.today.working_s;
      m.todayStandby = data.today.standby_s;
      // Keep the cards in config order.
      $("machines").appendChild(m.el);
    }
    for (const [id, m] of machines) {
      if (!seen.has(id)) { m.el.remove(); machines.delete(id); }
    }
    sessions = snapshot.sessions.slice();
    renderSessions();
    if (snapshot.delivery) renderHealth(snapshot.delivery);
    for (const m of machines.values()) renderCard(m);
    if (tuning && !machines.has(tuning.deviceId)) closeTuning();
    scheduleDraw();
  }

  function foldToday(m, at) {
    const elapsed = Math.max(0, at - m.segSince);
    if (m.segClass === "working") m.todayWorking += elapsed;
    if (m.segClass === "standby") m.todayStandby += elapsed;
    m.segSince = at;
  }

  function onState(change) {
    const m = machines.get(change.device_id);
    if (!m) return;
    foldToday(m, change.ts);
    const previousClass = m.segClass;
    m.segClass = change.state === "stopping" ? previousClass : segmentClass(change.state, null);
    m.state = change.state;
    m.session_id = change.session_id;
    if (!RUNNING.has(change.state)) m.session_started_at = null;
    m.bands.push([change.ts, change.state]);
    renderCard(m);
    scheduleDraw();
  }

  function onReading(reading) {
    const m = machines.get(reading.device_id);
    if (!m) return;
    m.power_w = reading.power_w;
    m.last_seen = reading.ts;
    m.readings.push([reading.ts, reading.power_w]);
    const since = now() - windowS;
    while (m.readings.length && m.readings[0][0] < since) m.readings.shift();
    renderCard(m);
    scheduleDraw();
  }

  function onEvent(event) {
    const m = machines.get(event.device_id);
    const type = event.event_type;
    if (m && type === "device_online") { m.online = true; m.last_seen = parseIso(event.data.last_seen); }
    if (m && type === "device_offline") { m.online = false; }
    if (m && type === "session_started") {
      m.session_id = event.session_id;
      m.session_started_at = parseIso(event.data.started_at);
    }
    if (type === "session_stopped" || type === "session_timeout") {
      if (m) { m.session_id = null; m.session_started_at = null; }
      sessions.unshift(Object.assign({ device_id: event.device_id, machine_name: event.machine_name,
        session_id: event.session_id }, event.data));
      sessions = sessions.slice(0, 20);
      renderSessions();
    }
    if (m) renderCard(m);
  }

  // --- rendering ---------------------------------------------------------------------

  function makeCard(deviceId) {
    const el = $("card-template").content.firstElementChild.cloneNode(true);
    el.dataset.deviceId = deviceId;
    el.querySelector(".try").addEventListener("click", () => openTuning(deviceId));
    return el;
  }

  function renderCard(m) {
    const el = m.el;
    const state = shownState(m);
    const t = now();
    el.dataset.state = state;
    el.querySelector(".name").textContent = m.machine_name;
    el.querySelector(".device").textContent = m.device_id;
    const badge = el.querySelector(".state");
    badge.textContent = state;
    badge.className = "state s-" + state;
    el.querySelector(".power .value").textContent = watts(m.power_w);
    const online = el.querySelector(".online");
    const seen = m.last_seen ? "last seen " + duration(t - m.last_seen) + " ago" : "never seen";
    online.textContent = (m.online === false ? "offline" : m.online ? "online" : "unknown") + ", " + seen;
    online.classList.toggle("off", m.online === false);
    el.querySelector(".elapsed").textContent =
      m.session_started_at && m.session_id ? "running " + duration(t - m.session_started_at) : "none";
    const open = Math.max(0, t - m.segSince);
    el.querySelector(".today-working").textContent =
      duration(m.todayWorking + (m.segClass === "working" ? open : 0));
    el.querySelector(".today-standby").textContent =
      duration(m.todayStandby + (m.segClass === "standby" ? open : 0));
    el.querySelector(".standby-w").textContent = m.thresholds.standby_threshold_w;
    el.querySelector(".working-w").textContent = m.thresholds.working_threshold_w;
  }

  function span(m, t) {
    let from = t - windowS;
    const first = m.readings.length ? m.readings[0][0] : t;
    from = Math.max(from, Math.min(first, t - MIN_SPAN_S));
    return from;
  }

  function chartSpec(m, extra) {
    const t = now();
    return Object.assign({
      from: span(m, t), to: t, now: t,
      readings: m.readings, bands: m.bands,
      thresholds: { standby: m.thresholds.standby_threshold_w, working: m.thresholds.working_threshold_w },
    }, extra || {});
  }

  function scheduleDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(() => {
      drawPending = false;
      for (const m of machines.values()) window.BoardChart.draw(m.el.querySelector("canvas"), chartSpec(m));
      drawTuning();
    });
  }

  function renderSessions() {
    const body = $("sessions").querySelector("tbody");
    body.textContent = "";
    for (const s of sessions) {
      const row = document.createElement("tr");
      const cells = [s.machine_name, clockTime(parseIso(s.started_at)), clockTime(parseIso(s.ended_at)),
        duration(s.duration_s), duration(s.working_s), duration(s.standby_s), energy(s.energy_wh),
        s.reason === "power_off" ? "power off" : (s.reason || "").replace("_", " ")];
      for (const text of cells) {
        const cell = document.createElement("td");
        cell.textContent = text;
        row.appendChild(cell);
      }
      body.appendChild(row);
    }
    if (!sessions.length) {
      const row = document.createElement("tr");
      const cell = document.createElement("td");
      cell.colSpan = 8;
      cell.textContent = "No completed session yet.";
      row.appendChild(cell);
      body.appendChild(row);
    }
  }

  function renderHealth(d) {
    const box = $("health");
    box.textContent = "";
    function item(label, value, cls) {
      const span = document.createElement("span");
      span.append(label + " ");
      const b = document.createElement("b");
      b.textContent = value;
      if (cls) b.className = cls;
      span.appendChild(b);
      box.appendChild(span);
    }
    item("MQTT", d.mqtt_connected ? "connected" : "disconnected", d.mqtt_connected ? "good" : "bad");
    if (d.odoo_configured) item("pending", String(d.pending ?? "?"), d.flagged ? "bad" : "");
    else item("events kept locally", String(d.pending ?? "?"));
    item("dead", String(d.dead ?? "?"), d.dead ? "bad" : "");
    let odoo = "local only", cls = "";
    if (d.odoo_configured) {
      odoo = d.odoo_reachable === false ? "unreachable" : d.odoo_reachable ? "reachable" : "no delivery yet";
      cls = d.odoo_reachable === false ? "bad" : d.odoo_reachable ? "good" : "";
    }
    item("Odoo", odoo, cls);
    box.title = d.odoo_last_error || "";
    renderStoreBanner(d);
  }

  // A full disk (nothing is acknowledged until space is freed) or the disk budget's warning.
  function renderStoreBanner(d) {
    const banner = $("store-banner");
    if (d.store_error) {
      banner.textContent = d.store_disk_full
        ? "The disk holding the bridge's data is full" + (d.store_since ? " since " + clockTime(parseIso(d.store_since)) : "") +
          ": nothing new is recorded until space is freed (the broker keeps the messages; nothing is lost)."
        : "The bridge's store is failing: " + d.store_error;
      banner.title = d.store_error;
      banner.className = "banner";
      banner.hidden = false;
    } else if (d.store_warning) {
      banner.textContent = "Disk budget: " + d.store_warning;
      banner.title = "";
      banner.className = "banner warning";
      banner.hidden = false;
    } else {
      banner.hidden = true;
      banner.textContent = "";
    }
  }

  // --- try thresholds ----------------------------------------------------------------

  function openTuning(deviceId) {
    const m = machines.get(deviceId);
    if (!m) return;
    tuning = { deviceId, result: null };
    $("tuning-machine").textContent = m.machine_name;
    const form = $("tuning-form");
    for (const name of ["standby_threshold_w", "working_threshold_w", "start_debounce_s", "stop_debounce_s"]) {
      form.elements[name].value = m.session_config[name];
    }
    $("tuning-current-count").textContent = "–";
    $("tuning-proposed-count").textContent = "–";
    $("tuning-current").textContent = "";
    $("tuning-proposed").textContent = "";
    $("tuning-error").hidden = true;
    $("tuning").hidden = false;
    $("tuning").scrollIntoView({ behavior: "smooth", block: "start" });
    scheduleDraw();
  }

  function closeTuning() {
    tuning = null;
    $("tuning").hidden = true;
  }
  $("tuning-close").addEventListener("click", closeTuning);

  $("tuning-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!tuning) return;
    const deviceId = tuning.deviceId;
    const params = new URLSearchParams();
    for (const el of e.target.elements) if (el.name) params.set(el.name, el.value);
    try {
      const result = await api("/board/devices/" + encodeURIComponent(deviceId) + "/tuning?" + params);
      if (!tuning || tuning.deviceId !== deviceId) return;
      tuning.result = result;
      $("tuning-error").hidden = true;
      renderTuning(result);
    } catch (err) {
      if (err instanceof Refused) return askToken(true);
      $("tuning-error").textContent = err.message;
      $("tuning-error").hidden = false;
    }
  });

  function sessionList(list, target) {
    const ol = $(target);
    ol.textContent = "";
    for (const s of list) {
      const li = document.createElement("li");
      const end = s.ended_at === null ? "still running" : clockTime(s.ended_at);
      const split = s.working_s === null ? "" : ", working " + duration(s.working_s) + ", standby " + duration(s.standby_s);
      li.textContent = clockTime(s.started_at) + " – " + end + ": " + duration(s.duration_s) + split;
      ol.appendChild(li);
    }
    if (!list.length) {
      const li = document.createElement("li");
      li.textContent = "no session";
      ol.appendChild(li);
    }
  }

  function renderTuning(result) {
    $("tuning-current-count").textContent = String(result.current.count);
    $("tuning-proposed-count").textContent = String(result.proposed.count);
    sessionList(result.current.sessions, "tuning-current");
    sessionList(result.proposed.sessions, "tuning-proposed");
    scheduleDraw();
  }

  function drawTuning() {
    if (!tuning) return;
    const m = machines.get(tuning.deviceId);
    if (!m) return;
    const extra = {};
    const result = tuning.result;
    if (result) {
      const p = result.proposed.session_config;
      extra.proposed = { standby: p.standby_threshold_w, working: p.working_threshold_w };
      const pairs = (list) => list.map((s) => [s.started_at, s.ended_at]);
      extra.strips = [
        { label: "now", colour: "#2fbf71", sessions: pairs(result.current.sessions) },
        { label: "tried", colour: "#ff7a59", sessions: pairs(result.proposed.sessions) },
      ];
    }
    window.BoardChart.draw($("tuning-chart"), chartSpec(m, extra));
  }

  // --- start ---------------------------------------------------------------------------

  setInterval(() => {
    for (const m of machines.values()) renderCard(m);
    scheduleDraw();
  }, 1000);
  setInterval(async () => {
    if ($("board").hidden) return;
    try { applySnapshot(await api("/board")); } catch (err) { /* the stream's error handler acts */ }
  }, RESYNC_MS);
  window.addEventListener("resize", scheduleDraw);
  window.addEventListener("hashchange", () => { tokenFromFragment(); connect(); });

  try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
  tokenFromFragment();
  connect();
})();
