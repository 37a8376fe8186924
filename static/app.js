// Small progressive enhancements; every page works without this file.
document.addEventListener("htmx:configRequest", (event) => {
  // htmx requests carry the CSRF token like forms do.
  const token = document.querySelector('meta[name="csrf-token"]');
  if (token) event.detail.headers["X-CSRFToken"] = token.content;
});

document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const text = button.dataset.copy;
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    // Fallback for browsers without clipboard permission: select the text to copy by hand.
    const field = document.createElement("textarea");
    field.value = text;
    document.body.appendChild(field);
    field.select();
    document.execCommand("copy");
    field.remove();
  }
  const original = button.textContent;
  button.textContent = "Copied";
  button.classList.add("copied");
  setTimeout(() => {
    button.textContent = original;
    button.classList.remove("copied");
  }, 1500);
});

// Re-render server 422s (form errors) into the target instead of dropping them.
document.addEventListener("htmx:beforeSwap", (event) => {
  if (event.detail.xhr.status === 422) {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});

// Other htmx errors (403, 404, 409, 500…) would otherwise be silent: say so in a flash.
document.addEventListener("htmx:responseError", (event) => {
  const status = event.detail.xhr.status;
  if (status === 422) return;
  let message = `That did not work (error ${status}). Reload the page and try again.`;
  try {
    const body = JSON.parse(event.detail.xhr.responseText);
    if (body.error && body.error.message) message = body.error.message;
  } catch (err) {
    // Not JSON: keep the generic message.
  }
  let box = document.querySelector(".flashes");
  if (!box) {
    box = document.createElement("div");
    box.className = "flashes";
    box.setAttribute("role", "status");
    document.querySelector("main").prepend(box);
  }
  const flash = document.createElement("div");
  flash.className = "flash flash-error";
  flash.textContent = message;
  box.appendChild(flash);
});

// Confirmations live in data-confirm attributes (Jinja escapes them), never in inline handlers:
// a name with a quote can neither run code nor skip the question.
document.addEventListener(
  "submit",
  (event) => {
    const form = event.target.closest("form[data-confirm]");
    if (form && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
      event.stopImmediatePropagation(); // htmx listens for submit too: it must not send either
    }
  },
  true,
);

// A <select data-submit-on-change> submits its form when changed (the organization switcher).
document.addEventListener("change", (event) => {
  const select = event.target.closest("select[data-submit-on-change]");
  if (select && select.form) select.form.requestSubmit();
});

// Escape inside an inline edit (a price row) cancels it: the row's own Cancel link, so htmx
// swaps the saved row back (and without htmx the link reloads the page).
let refocusRow = null; // the row whose Edit link gets the focus back once it is swapped in
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  const row = event.target.closest && event.target.closest(".editing");
  const cancel = row && row.querySelector("[data-cancel-edit]");
  if (!cancel) return;
  event.preventDefault();
  refocusRow = row.id;
  cancel.click();
});
document.addEventListener("htmx:afterSettle", () => {
  const row = refocusRow && document.getElementById(refocusRow);
  if (!row || row.classList.contains("editing")) return;
  refocusRow = null;
  const edit = row.querySelector("a[hx-get]");
  if (edit) edit.focus();
});
