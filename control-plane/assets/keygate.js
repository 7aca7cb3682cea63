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

document.addEventListener("DOMContentLoaded", () => localTimes(document));
document.addEventListener("htmx:afterSwap", (event) => localTimes(event.target));
