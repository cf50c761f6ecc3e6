// auditq dashboard: the only JavaScript besides htmx. Loaded from this origin (the CSP
// allows no inline script), so everything is wired here by attributes.
(function () {
  "use strict";

  // Polling (hx-trigger="every Nms" on elements marked data-poll) pauses while the tab is
  // hidden: the poll is cancelled before it is sent. The same elements also listen for
  // visibilitychange, so coming back to the tab refreshes at once.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var elt = event.detail.elt;
    if (elt.hasAttribute("data-poll") && document.visibilityState !== "visible") {
      event.preventDefault();
    }
  });

  // A poll that fails (server or network down) marks its region as stale until one succeeds.
  function mark(stale) {
    return function (event) {
      var elt = event.detail.elt;
      if (elt && elt.hasAttribute && elt.hasAttribute("data-poll")) {
        elt.classList.toggle("stale", stale);
      }
    };
  }
  document.addEventListener("htmx:sendError", mark(true));
  document.addEventListener("htmx:responseError", mark(true));
  document.addEventListener("htmx:afterSwap", mark(false));

  // Forms with data-confirm ask first (discard, requeue all).
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
    }
  });
})();
