// keygate dashboard: what the pages need JavaScript for. Loaded as a file (the CSP forbids inline
// script); every page reads without it.
"use strict";

// Times are rendered in UTC by the server; show them in the reader's own zone as well.
function localTimes(root) {
  for (const time of root.querySelectorAll("time[datetime]")) {
    const at = new Date(time.getAttribute("datetime"));
    if (!Number.isNaN(at.getTime())) {
      time.title = at.toLocaleString();
    }
  }
}

// The button that opened a dialog, to give focus back to when it closes.
let opener = null;
document.addEventListener("click", (event) => {
  const button = event.target.closest("[hx-target='#dialog-slot']");
  if (button) opener = button;
});

// Cancel in a dialog: close it here instead of loading the list again (focus goes back).
document.addEventListener("click", (event) => {
  const cancel = event.target.closest("dialog[data-modal] a[data-dismiss]");
  if (!cancel) return;
  event.preventDefault();
  cancel.closest("dialog").close();
});

// Server-rendered dialogs arrive open (so they read without JavaScript); here they become modal.
function modals(root) {
  const dialogs = root.matches("dialog[data-modal]") ? [root] : root.querySelectorAll("dialog[data-modal]");
  for (const dialog of dialogs) {
    if (dialog.open) dialog.close();
    dialog.showModal();
    if (dialog.hasAttribute("data-show-once")) {
      showOnce(dialog);
    } else {
      dialog.addEventListener("close", () => closed(dialog));
    }
  }
}

// Where a dialog that is a page of its own goes when it closes: its Cancel link's page.
function away(dialog, link) {
  return dialog.querySelector(link)?.getAttribute("href") || "/ui/keys";
}

function closed(dialog) {
  // The close that made room for showModal() arrives after it: the dialog is open again.
  if (dialog.open || !dialog.isConnected) return;
  const inPage = dialog.closest("#dialog-slot") !== null;
  const back = away(dialog, "[data-dismiss]");
  dialog.remove();
  if (!inPage) location.assign(back);
  else if (opener) opener.focus();
}

// The new key's dialog: copy, download, and a confirmation before the key is gone for good.
function showOnce(dialog) {
  const secret = dialog.querySelector("input.secret");
  const status = dialog.querySelector("[role=status]");
  const confirm = dialog.querySelector("dialog[role=alertdialog]");
  for (const button of dialog.querySelectorAll("[data-copy], [data-download]")) button.hidden = false;
  dialog.querySelector("[data-copy]").addEventListener("click", async () => {
    status.textContent = "";
    try {
      await navigator.clipboard.writeText(secret.value);
      status.textContent = "Copied";
    } catch {
      secret.select();
      status.textContent = "Copying was refused: the key is selected, press Ctrl+C";
    }
  });
  dialog.querySelector("[data-download]").addEventListener("click", (event) => {
    const url = URL.createObjectURL(new Blob([secret.value + "\n"], { type: "text/plain" }));
    const link = document.createElement("a");
    link.href = url;
    link.download = event.currentTarget.dataset.fileName;
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
    status.textContent = "Downloaded " + link.download;
  });
  let confirmed = false;
  const ask = (event) => {
    event.preventDefault();
    if (!confirm.open) confirm.showModal();
  };
  dialog.addEventListener("cancel", ask);
  // Chromium lets Escape close a dialog whatever its cancel handler says when the page has had
  // no user activation yet (a show-once page just loaded): open it again, and ask.
  dialog.addEventListener("close", () => {
    // (The close that made room for showModal() arrives after it, with the dialog open again.)
    if (confirmed || dialog.open || !dialog.isConnected) return;
    dialog.showModal();
    if (confirm.open) confirm.close();
    confirm.showModal();
  });
  dialog.querySelector("[data-close-once]").addEventListener("click", ask);
  confirm.querySelector("[data-confirm-stay]").addEventListener("click", () => confirm.close());
  confirm.querySelector("[data-confirm-close]").addEventListener("click", () => {
    // The key leaves the page before anything else happens.
    const back = away(dialog, "[data-close-once]");
    confirmed = true;
    secret.value = "";
    dialog.remove();
    location.assign(back);
  });
}

// Available/Selected: ticking a choice moves it to Selected, unticking puts it back, and the
// move is announced. Without JavaScript the two lists are plain checkboxes.
document.addEventListener("change", (event) => {
  const box = event.target.closest("[data-picker] input[type=checkbox]");
  if (!box) return;
  const picker = box.closest("[data-picker]");
  const side = box.checked ? "Selected" : "Available";
  picker.querySelector(`ul[data-side="${side}"]`).append(box.closest("li"));
  box.focus();
  picker.querySelector("[role=status]").textContent = `${box.value}: ${side.toLowerCase()}`;
});

document.addEventListener("DOMContentLoaded", () => localTimes(document));
document.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));
htmx.onLoad(modals);
