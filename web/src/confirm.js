// A confirmation in the page's own <dialog> (not window.confirm, which
// blocks the page and every live terminal while it is open).

/** Resolves to true when the person confirms. */
export function confirmAction(text, word = "Confirm") {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = word;
  dialog.returnValue = "";
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
  });
}
