// pennyworth console: DOM helpers. Every piece of text reaches the page as a text node
// (textContent / createTextNode), never as HTML: key names, metadata and reasons are
// untrusted. The Content-Security-Policy's Trusted Types rule makes any innerHTML throw.
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const SVG_NS = "http://www.w3.org/2000/svg";

  // h("button", {class: "primary", onclick: fn, "aria-label": "…"}, "text", child, …)
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on")) {
        // Handlers are functions only: a string here would be markup-like code.
        if (typeof value !== "function") throw new Error(`refusing a non-function ${name} handler`);
        el.addEventListener(name.slice(2), value);
      } else if (name === "dataset") {
        Object.assign(el.dataset, value);
      } else if (name === "value" || name === "checked" || name === "disabled" || name === "hidden") {
        el[name] = value;
      } else if (name === "href" && !/^(#|blob:|https?:|\.\.?\/|[a-z0-9.-]+(\?|$))/i.test(String(value))) {
        throw new Error("refusing an unexpected link target");
      } else {
        el.setAttribute(name, value === true ? "" : String(value));
      }
    }
  }

  function append(el, children) {
    for (const child of children.flat(Infinity)) {
      if (child === undefined || child === null || child === false) continue;
      el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
    return el;
  }

  function replace(el, ...children) {
    clear(el);
    append(el, children);
    return el;
  }

  // Screen readers hear status changes through one polite live region.
  function announce(message) {
    const region = document.getElementById("announcer");
    if (!region) return;
    region.textContent = "";
    window.setTimeout(() => (region.textContent = message), 30);
  }

  let idCounter = 0;
  function uid(prefix) {
    idCounter += 1;
    return `${prefix}-${idCounter}`;
  }

  // Formatting. Money arrives as exact decimal strings ("0.000123"); it is shown rounded for
  // reading, with the exact value in a title attribute, and never computed with in floats
  // beyond chart bar lengths.
  function money(value, { exact = false } = {}) {
    if (value === null || value === undefined) return "—";
    const n = Number(value);
    if (!Number.isFinite(n)) return String(value);
    if (exact) return `$${value}`;
    if (n !== 0 && Math.abs(n) < 0.01) {
      // Two significant digits, never exponent notation: $0.0000021.
      const decimals = Math.min(12, Math.ceil(-Math.log10(Math.abs(n))) + 1);
      return `${n < 0 ? "-" : ""}$${Math.abs(n).toFixed(decimals)}`;
    }
    return `$${n.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 })}`;
  }

  function moneyEl(value) {
    return h("span", { class: "money", title: value === null || value === undefined ? null : `$${value}` }, money(value));
  }

  function count(value) {
    return Number(value || 0).toLocaleString("en-US");
  }

  function dateTime(text) {
    if (!text) return "—";
    const d = new Date(text);
    if (Number.isNaN(d.getTime())) return String(text);
    return d.toISOString().replace("T", " ").replace(/:\d\d(\.\d+)?Z$/, "");
  }

  function timeEl(text) {
    if (!text) return h("span", { class: "muted" }, "—");
    return h("time", { datetime: text, title: `${dateTime(text)} UTC` }, dateTime(text));
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  function monthRange(month) {
    // month: "YYYY-MM" → first and last day (the last capped at today, UTC).
    const [y, m] = month.split("-").map(Number);
    const first = new Date(Date.UTC(y, m - 1, 1));
    const last = new Date(Date.UTC(y, m, 0));
    const today = new Date();
    return { from: isoDay(first), to: isoDay(last < today ? last : today) };
  }

  function daysBetween(from, to) {
    const days = [];
    for (let d = new Date(`${from}T00:00:00Z`); isoDay(d) <= to; d.setUTCDate(d.getUTCDate() + 1)) {
      days.push(isoDay(d));
    }
    return days;
  }

  async function copyText(text) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch (_) {
      return false;
    }
  }

  // A copy button for a code block or input: copies, says so, and never fails silently.
  function copyButton(getText, label) {
    const button = h("button", { type: "button", class: "secondary small copy" }, label || "Copy");
    button.addEventListener("click", async () => {
      const ok = await copyText(getText());
      const original = label || "Copy";
      button.textContent = ok ? "Copied" : "Copy failed: select and copy by hand";
      announce(ok ? "Copied to the clipboard" : "Could not copy; select the text and copy it by hand");
      window.setTimeout(() => (button.textContent = original), 2500);
    });
    return button;
  }

  function downloadFile(name, type, text) {
    const url = URL.createObjectURL(new Blob([text], { type }));
    const link = h("a", { href: url, download: name, hidden: true });
    document.body.appendChild(link);
    link.click();
    link.remove();
    window.setTimeout(() => URL.revokeObjectURL(url), 1000);
  }

  // CSV with every field quoted; a leading = + - @ tab CR (after any ') gets a ' so spreadsheets do not run
  // it; numbers stay. The CLI's exports (cli/csvfile.py) follow the same rule.
  function toCsv(rows, columns) {
    const quote = (value) => {
      let text = value === null || value === undefined ? "" : String(value);
      if (/^'*[=+\-@\t\r]/.test(text) && !/^-?\d+(\.\d+)?$/.test(text)) text = `'${text}`;
      return `"${text.replace(/"/g, '""')}"`;
    };
    const lines = [columns.map((c) => quote(c.label)).join(",")];
    for (const row of rows) lines.push(columns.map((c) => quote(c.value(row))).join(","));
    return `${lines.join("\r\n")}\r\n`;
  }

  // A Bedrock guardrail as people type it ("abc123:1"; an ARN holds colons, so the version is what
  // follows the last one when it is DRAFT or a number) and as the API sends it ({id, version}).
  const guardrail = {
    text: (g) => (g ? `${g.id} (version ${g.version})` : ""),
    field: (g) => (g ? `${g.id}:${g.version}` : ""),
    body(value) {
      const text = String(value || "").trim();
      if (!text) return null;
      const at = text.lastIndexOf(":");
      const version = at < 0 ? "" : text.slice(at + 1);
      if (at > 0 && (version === "DRAFT" || /^\d+$/.test(version))) return { id: text.slice(0, at), version };
      return { id: text, version: "DRAFT" };
    },
  };

  Object.assign(PW, {
    guardrail,
    h,
    svg,
    clear,
    replace,
    announce,
    uid,
    money,
    moneyEl,
    count,
    dateTime,
    timeEl,
    isoDay,
    monthRange,
    daysBetween,
    copyButton,
    copyText,
    downloadFile,
    toCsv,
  });
})();
