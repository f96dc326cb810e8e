// pennyworth console: shared building blocks (page sections, tables, states, dialogs).
"use strict";

(function () {
  const PW = (window.PW = window.PW || {});
  const { h, replace, announce, uid } = PW;

  function pageHeader(title, intro, ...actions) {
    return h(
      "div",
      { class: "page-header" },
      h("div", {}, h("h1", { tabindex: "-1", id: "page-title" }, title), intro ? h("p", { class: "intro" }, intro) : null),
      actions.length ? h("div", { class: "actions" }, actions) : null
    );
  }

  function card(title, ...children) {
    const id = uid("card");
    return h("section", { class: "card", "aria-labelledby": id }, h("h2", { id }, title), children);
  }

  function loading(label) {
    return h("p", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), label || "Loading…");
  }

  // The API's own message, its code when there is one, and what to do for common cases.
  function errorBox(error, { retry } = {}) {
    const hints = {
      403: "The gateway refused this for your account.",
      401: "Your sign-in was refused; signing in again may help.",
    };
    const code = error && error.code ? h("code", {}, error.code) : null;
    return h(
      "div",
      { class: "error", role: "alert" },
      h("p", {}, h("strong", {}, "Error: "), error && error.message ? error.message : String(error)),
      code || (error && hints[error.status]) ? h("p", { class: "muted" }, hints[error.status] || "", code ? " Code: " : "", code) : null,
      retry ? h("button", { type: "button", class: "secondary small", onclick: retry }, "Try again") : null
    );
  }

  function empty(text) {
    return h("p", { class: "empty" }, text);
  }

  // Runs `load` with a loading state in `target`, then renders its result (or the API error).
  async function withLoading(target, label, load, render) {
    target.setAttribute("aria-busy", "true");
    replace(target, loading(label));
    try {
      const result = await load();
      replace(target, render(result));
    } catch (error) {
      if (error && error.name === "AbortError") return;
      if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
      replace(target, errorBox(error, { retry: () => withLoading(target, label, load, render) }));
    } finally {
      target.removeAttribute("aria-busy");
    }
  }

  // A table that turns into labelled cards on narrow screens (each cell carries its column name).
  // columns: [{label, cell: row => Node|string, class?}]
  function table(columns, rows, { caption, emptyText = "Nothing here yet." } = {}) {
    if (!rows.length) return empty(emptyText);
    // The wrapper scrolls sideways on narrow screens, so it is focusable (keyboard scrolling).
    return h(
      "div",
      { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption || "Table" },
      h(
        "table",
        { class: "data" },
        caption ? h("caption", {}, caption) : null,
        h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col", class: c.class }, c.label)))),
        h(
          "tbody",
          {},
          rows.map((row) =>
            h(
              "tr",
              {},
              columns.map((c, i) => {
                // One box per cell: on narrow screens a cell is a labelled grid row, and loose
                // pieces ("$1.00", " of ", "$5.00") would each take a row of their own.
                const content = h("div", { class: "cell" }, c.cell(row));
                const attrs = { class: c.class, "data-label": c.label };
                return i === 0 ? h("th", { ...attrs, scope: "row" }, content) : h("td", attrs, content);
              })
            )
          )
        )
      )
    );
  }

  function statusBadge(status) {
    return h("span", { class: `badge status-${status}` }, status);
  }

  function field(label, control, hint) {
    const id = control.id || uid("field");
    control.id = id;
    const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
    if (hintEl) control.setAttribute("aria-describedby", hintEl.id);
    return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl);
  }

  // A modal <dialog>: focus moves in and comes back, Escape closes, the page behind is inert.
  function dialog(title, build, { onClose } = {}) {
    const titleId = uid("dialog-title");
    const previous = document.activeElement;
    const el = h("dialog", { "aria-labelledby": titleId, class: "dialog" });
    const close = (value) => {
      if (el.open) el.close(value || "");
    };
    el.addEventListener("close", () => {
      el.remove();
      // Back where the dialog was opened from, or to the page's title if that is gone.
      const target = previous && previous.isConnected ? previous : document.getElementById("page-title");
      if (target && target.focus) target.focus();
      if (onClose) onClose(el.returnValue);
    });
    el.appendChild(h("h2", { id: titleId }, title));
    el.appendChild(build(close));
    document.body.appendChild(el);
    el.showModal();
    const first = el.querySelector("[autofocus]") || el.querySelector("input, select, textarea, button");
    if (first) first.focus();
    return el;
  }

  // A form whose submit runs `action`; errors from the API appear in the form, next to its field.
  function form(children, action, { submitLabel, cancel, danger = false } = {}) {
    const errorSlot = h("div", { class: "form-error" });
    const submit = h("button", { type: "submit", class: danger ? "danger" : "primary" }, submitLabel || "Save");
    const el = h(
      "form",
      { novalidate: true },
      children,
      errorSlot,
      h(
        "div",
        { class: "form-actions" },
        cancel ? h("button", { type: "button", class: "secondary", onclick: cancel }, "Cancel") : null,
        submit
      )
    );
    el.addEventListener("submit", async (event) => {
      event.preventDefault();
      replace(errorSlot);
      for (const invalid of el.querySelectorAll("[aria-invalid]")) invalid.removeAttribute("aria-invalid");
      if (!el.checkValidity()) {
        const bad = el.querySelector(":invalid");
        bad.setAttribute("aria-invalid", "true");
        replace(errorSlot, errorBox({ message: bad.validationMessage || "Check this field." }));
        bad.focus();
        return;
      }
      submit.disabled = true;
      const label = submit.textContent;
      submit.textContent = "Working…";
      try {
        await action(el);
      } catch (error) {
        if (error instanceof PW.auth.SessionExpired) return PW.app.sessionExpired();
        replace(errorSlot, errorBox(error));
        const target = error && error.param ? el.querySelector(`[name="${CSS.escape(error.param)}"]`) : null;
        if (target) {
          target.setAttribute("aria-invalid", "true");
          target.focus();
        } else {
          errorSlot.querySelector(".error").setAttribute("tabindex", "-1");
          errorSlot.querySelector(".error").focus();
        }
      } finally {
        submit.disabled = false;
        submit.textContent = label;
      }
    });
    return el;
  }

  // Progress of a long listing: a <progress> without a known end, and a count.
  function progress(label) {
    const bar = h("progress", { "aria-label": label });
    const text = h("span", { class: "muted" }, "Starting…");
    const cancel = h("button", { type: "button", class: "secondary small" }, "Stop");
    const el = h("div", { class: "progress", role: "status" }, h("span", {}, label), bar, text, cancel);
    return {
      el,
      cancel,
      update(done, more, noun) {
        text.textContent = `${done.toLocaleString("en-US")} ${noun}${more ? " so far…" : ""}`;
      },
      finish(doneText) {
        replace(el, h("span", { class: "muted" }, doneText));
        announce(doneText);
      },
    };
  }

  function codeBlock(text, label) {
    const pre = h("pre", { class: "code", tabindex: "0", "aria-label": label }, h("code", {}, text));
    const copy = PW.copyButton(() => text, "Copy");
    copy.setAttribute("aria-label", `Copy: ${label}`);
    return h("div", { class: "code-block" }, pre, copy);
  }

  function toast(message) {
    const region = document.getElementById("toasts");
    const el = h("div", { class: "toast", role: "status" }, message);
    region.appendChild(el);
    window.setTimeout(() => el.remove(), 5000);
  }

  PW.ui = { pageHeader, card, loading, errorBox, empty, withLoading, table, statusBadge, field, dialog, form, progress, codeBlock, toast };
})();
