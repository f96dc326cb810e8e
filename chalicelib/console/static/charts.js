// pennyworth console: two small SVG charts (no library). Each chart is an image with a
// text summary for screen readers, and the same numbers follow in a table.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, svg, money } = PW;

  // A round top for the axis and a round step: 4 steps of 0.25/0.5/1/2/2.5 × a power of ten.
  function niceScale(value) {
    if (!(value > 0)) return { max: 1, step: 0.25, decimals: 2 };
    const power = 10 ** Math.floor(Math.log10(value / 4));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s * 4 >= value);
    const decimals = Number.isInteger(step) ? 0 : Math.max(2, Math.min(12, Math.ceil(-Math.log10(step)) + (Math.abs(step / power - 2.5) < 1e-9 ? 1 : 0)));
    return { max: step * 4, step, decimals };
  }

  function axisLabel(value, decimals) {
    return value === 0 ? "$0" : `$${value.toFixed(decimals)}`;
  }

  // Vertical bars: one per day. points: [{label: "2026-11-03", short: "3", value: Number, exact: "0.12"}]
  function columnChart(points, { title, description }) {
    // Drawn in fewer units on a narrow screen, so its text stays readable when scaled down.
    const narrow = window.innerWidth < 760;
    const width = narrow ? 380 : 720;
    const height = narrow ? 220 : 240;
    const pad = { top: 12, right: 8, bottom: 28, left: narrow ? 70 : 84 };
    const scale = niceScale(Math.max(0, ...points.map((p) => p.value)));
    const max = scale.max;
    const plotW = width - pad.left - pad.right;
    const plotH = height - pad.top - pad.bottom;
    const slot = plotW / Math.max(points.length, 1);
    const barW = Math.max(2, Math.min(28, slot * 0.7));
    const grid = [0, 0.25, 0.5, 0.75, 1].map((f) => {
      const tick = scale.step * f * 4;
      const y = pad.top + plotH - f * plotH;
      return svg(
        "g",
        { class: "grid" },
        svg("line", { x1: pad.left, x2: width - pad.right, y1: y, y2: y }),
        svg("text", { x: pad.left - 6, y: y + 4, "text-anchor": "end" }, axisLabel(tick, scale.decimals))
      );
    });
    const labelEvery = points.length > (narrow ? 8 : 16) ? 5 : points.length > 8 ? 2 : 1;
    const bars = points.map((p, i) => {
      const x = pad.left + i * slot + (slot - barW) / 2;
      const barH = max ? (p.value / max) * plotH : 0;
      const shown = i % labelEvery === 0 || i === points.length - 1;
      return svg(
        "g",
        { class: "column" },
        svg(
          "rect",
          { class: p.value > 0 ? "bar" : "bar empty", x, y: pad.top + plotH - barH, width: barW, height: Math.max(barH, 0) },
          svg("title", {}, `${p.label}: ${money(p.exact)}`)
        ),
        shown ? svg("text", { x: x + barW / 2, y: height - 10, "text-anchor": "middle" }, p.short) : null
      );
    });
    return h(
      "figure",
      { class: "chart" },
      svg(
        "svg",
        { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": `${title}. ${description}`, focusable: "false" },
        grid,
        bars
      )
    );
  }

  // Horizontal bars: one per model (or key), largest first.
  function barList(rows, { title }) {
    const max = Math.max(0, ...rows.map((r) => r.value));
    return h(
      "ul",
      { class: "bar-list", "aria-label": title },
      rows.map((r) => {
        const track = h("span", { class: "bar-track", "aria-hidden": "true" }, h("span", { class: "bar-fill" }));
        // Width through the CSSOM (allowed by the CSP's style-src; no style attribute in markup).
        track.firstChild.style.width = `${max ? Math.max(1, (r.value / max) * 100) : 0}%`;
        return h(
          "li",
          {},
          h("span", { class: "bar-label" }, r.label),
          track,
          h("span", { class: "bar-value money", title: `$${r.exact}` }, money(r.exact), r.note ? h("span", { class: "muted" }, ` · ${r.note}`) : null)
        );
      })
    );
  }

  // A meter of spend against a budget, with its numbers in words.
  function budgetMeter({ spent, budget, label }) {
    const used = budget !== null && Number(budget) > 0 ? Number(spent) / Number(budget) : null;
    const meter = h("div", { class: "budget-bar", "aria-hidden": "true" }, h("span", {}));
    if (used !== null) {
      meter.firstChild.style.width = `${Math.min(100, used * 100)}%`;
      meter.classList.toggle("warn", used >= 0.8 && used < 1);
      meter.classList.toggle("over", used >= 1);
    }
    const text =
      used === null
        ? `${money(spent)} spent; no ${label} budget set`
        : `${money(spent)} of ${money(budget)} (${Math.floor(used * 100)}%)`;
    return h("div", { class: "budget" }, used === null ? null : meter, h("p", { class: "budget-text" }, text));
  }

  PW.charts = { columnChart, barList, budgetMeter };
})();
