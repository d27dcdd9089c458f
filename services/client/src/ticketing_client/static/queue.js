/* The waiting room page, live: polls the buyer's place, updates the numbers in place, swaps the panel in when the
   state changes (the draw, an admission, its end) and, when a waiting buyer is admitted, takes them to the event
   page to buy. Without JavaScript a <noscript> refresh does the same. */
(function () {
  "use strict";

  var panel = document.getElementById("queue-panel");
  if (!panel) { return; }
  var announcer = document.getElementById("queue-announcer");
  var pollTimer = null;

  function interval() { return Number(panel.dataset.pollMs) || 2000; }

  function schedule(ms) {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(poll, ms);
  }

  function show(id, value) {
    var element = document.getElementById(id);
    var text = value === null || value === undefined ? "" : String(value);
    if (element && element.textContent !== text) { element.textContent = text; }
  }

  function poll() {
    window.livePanel.getJson(panel.dataset.statusUrl)
      .then(function (place) {
        if (place.state === "admitted" && panel.dataset.state === "waiting") {
          if (announcer) { announcer.textContent = "It is your turn: opening the tickets"; }
          window.location.assign(panel.dataset.eventUrl);
          return;
        }
        if (place.key !== panel.dataset.key) { return refresh(); }
        show("queue-position", place.position);
        show("queue-ahead", place.ahead);
        show("queue-wait", place.estimatedWait);
        schedule(interval());
      })
      .catch(function () { schedule(interval() * 2); });
  }

  function refresh() {
    return window.livePanel.replacePanel(panel, panel.dataset.panelUrl, "queue-panel")
      .then(function (fresh) {
        panel = fresh;
        if (window.localizeTimes) { window.localizeTimes(panel); }
        var status = document.getElementById("queue-status");
        if (announcer && status) { announcer.textContent = "Waiting room: " + status.textContent; }
        start();
      })
      .catch(function () { schedule(interval() * 2); });
  }

  function start() {
    window.clearTimeout(pollTimer);
    if (panel.dataset.polling === "true") { schedule(interval()); }
  }

  start();
})();
