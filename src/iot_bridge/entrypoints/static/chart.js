// iot-bridge board: a small power chart on a canvas (our own code, no library).
// draw(canvas, spec) paints, from spec.from to spec.to (unix seconds):
//   state bands (translucent, full height), the power as a step line (power is held
//   between readings), the standby and working thresholds as dashed lines, optional
//   proposed thresholds (dotted) and session strips under the plot.
"use strict";
(function () {
  const STATE_COLOURS = {
    idle: "#7b8794", starting: "#f2b53a", standby: "#4c9bf5",
    working: "#2fbf71", stopping: "#b57ce6", offline: "#e5534b",
  };
  const THRESHOLD_COLOURS = { standby: "#4c9bf5", working: "#2fbf71" };
  const STRIP_H = 7;

  function niceMax(value) {
    if (!(value > 0)) return 10;
    const exponent = Math.pow(10, Math.floor(Math.log10(value)));
    for (const step of [1, 2, 2.5, 5, 10]) {
      if (step * exponent >= value) return step * exponent;
    }
    return 10 * exponent;
  }

  function clock(ts, seconds) {
    const d = new Date(ts * 1000);
    const options = { hour: "2-digit", minute: "2-digit", hour12: false };
    if (seconds) options.second = "2-digit";
    return d.toLocaleTimeString([], options);
  }

  function draw(canvas, spec) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(50, canvas.clientWidth);
    const height = Math.max(50, canvas.clientHeight);
    if (canvas.width !== Math.round(width * ratio) || canvas.height !== Math.round(height * ratio)) {
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);

    const strips = spec.strips || [];
    const left = 44, right = 8, top = 8;
    const bottom = 18 + (strips.length ? 6 + strips.length * (STRIP_H + 4) : 0);
    const plotW = width - left - right;
    const plotH = height - top - bottom;
    const from = spec.from, to = Math.max(spec.to, spec.from + 1);
    const readings = spec.readings || [];
    const thresholds = spec.thresholds || {};
    const proposed = spec.proposed || null;
    let peak = 0;
    for (const [, w] of readings) if (w > peak) peak = w;
    const candidates = [peak * 1.1, (thresholds.working || 0) * 1.25];
    if (proposed) candidates.push((proposed.working || 0) * 1.25, (proposed.standby || 0) * 1.25);
    const yMax = niceMax(Math.max(...candidates));
    const x = (ts) => left + ((ts - from) / (to - from)) * plotW;
    const y = (w) => top + plotH - (Math.min(w, yMax) / yMax) * plotH;

    // State bands: each runs from its start to the next one (or the right edge).
    const bands = spec.bands || [];
    for (let i = 0; i < bands.length; i++) {
      const start = Math.max(bands[i][0], from);
      const end = i + 1 < bands.length ? bands[i + 1][0] : to;
      if (end <= from || start >= to) continue;
      const state = bands[i][1];
      if (state === "idle") continue;
      ctx.globalAlpha = 0.18;
      ctx.fillStyle = STATE_COLOURS[state] || STATE_COLOURS.idle;
      ctx.fillRect(x(start), top, Math.max(1, x(end) - x(start)), plotH);
    }
    ctx.globalAlpha = 1;

    // Grid and axis labels.
    ctx.strokeStyle = "#2c3846";
    ctx.fillStyle = "#93a1b0";
    ctx.lineWidth = 1;
    ctx.font = "11px system-ui, sans-serif";
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const w = (yMax / 4) * i;
      const yy = Math.round(y(w)) + 0.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + plotW, yy); ctx.stroke();
      ctx.fillText(String(Math.round(w)), left - 5, yy);
    }
    ctx.textAlign = "center";
    ctx.textBaseline = "top";
    const ticks = Math.max(2, Math.floor(plotW / 90));
    for (let i = 0; i <= ticks; i++) {
      const ts = from + ((to - from) / ticks) * i;
      ctx.textAlign = i === 0 ? "left" : i === ticks ? "right" : "center";
      ctx.fillText(clock(ts, to - from < 900), x(ts), top + plotH + 3);
    }

    // Thresholds: current dashed, proposed dotted.
    const lines = [];
    function threshold(value, colour, dash, label, alignRight) {
      if (!(value > 0)) return;
      const yy = Math.round(y(value)) + 0.5;
      ctx.save();
      ctx.setLineDash(dash);
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(left + plotW, yy); ctx.stroke();
      ctx.restore();
      // The label sits on a dark patch so that neither the power line nor the grid hides it.
      const labelW = ctx.measureText(label).width;
      const labelX = alignRight ? left + plotW - 4 - labelW : left + 4;
      const labelY = Math.max(top + 12, yy - 2);
      ctx.fillStyle = "rgba(18, 25, 34, 0.85)";
      ctx.fillRect(labelX - 2, labelY - 12, labelW + 4, 12);
      ctx.fillStyle = colour;
      ctx.textAlign = "left";
      ctx.textBaseline = "bottom";
      ctx.fillText(label, labelX, labelY);
      lines.push({ label, value, y: yy });
    }
    threshold(thresholds.standby, THRESHOLD_COLOURS.standby, [6, 4], "standby " + thresholds.standby + " W");
    threshold(thresholds.working, THRESHOLD_COLOURS.working, [6, 4], "working " + thresholds.working + " W");
    if (proposed) {
      threshold(proposed.standby, "#f2b53a", [2, 3], "tried standby " + proposed.standby + " W", true);
      threshold(proposed.working, "#ff7a59", [2, 3], "tried working " + proposed.working + " W", true);
    }

    // Power: a step line, each reading held until the next one.
    let points = 0;
    if (readings.length) {
      ctx.strokeStyle = "#e8edf2";
      ctx.lineWidth = 1.6;
      ctx.beginPath();
      let started = false;
      let last = null;
      for (const [ts, w] of readings) {
        if (ts < from) { last = w; continue; }
        if (!started) {
          ctx.moveTo(x(from), y(last !== null ? last : w));
          started = true;
        }
        if (last !== null) ctx.lineTo(x(ts), y(last));
        ctx.lineTo(x(ts), y(w));
        last = w;
        points++;
      }
      if (started && spec.hold !== false) ctx.lineTo(x(Math.min(to, spec.now || to)), y(last));
      ctx.stroke();
    }

    // Session strips under the plot (tuning: current vs proposed).
    strips.forEach((strip, index) => {
      const yy = top + plotH + 24 + index * (STRIP_H + 4);
      ctx.fillStyle = "#232d3a";
      ctx.fillRect(left, yy, plotW, STRIP_H);
      ctx.fillStyle = strip.colour;
      for (const [start, end] of strip.sessions) {
        const a = x(Math.max(start, from));
        const b = x(Math.min(end === null ? to : end, to));
        ctx.fillRect(a, yy, Math.max(2, b - a), STRIP_H);
      }
      ctx.fillStyle = "#93a1b0";
      ctx.textAlign = "right";
      ctx.textBaseline = "top";
      ctx.fillText(strip.label, left - 5, yy - 3);
    });

    canvas.dataset.points = String(points);
    canvas.dataset.thresholds = JSON.stringify(lines);
  }

  window.BoardChart = { draw, STATE_COLOURS };
})();
