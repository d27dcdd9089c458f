/* The order page, live: counts down to expiresAt and polls the order until it is paid, expired or cancelled,
   swapping the status panel in when the state changes. Without JavaScript the page still works (the forms post,
   and a <noscript> refresh keeps the status current). */
(function () {
  "use strict";

  var panel = document.getElementById("order-panel");
  if (!panel) { return; }
  var announcer = document.getElementById("order-announcer");
  var countdownTimer = null;
  var pollTimer = null;

  function format(ms) {
    var total = Math.max(0, Math.floor(ms / 1000));
    var hours = Math.floor(total / 3600);
    var minutes = Math.floor((total % 3600) / 60);
    var seconds = total % 60;
    var mm = hours ? String(minutes).padStart(2, "0") : String(minutes);
    return (hours ? hours + ":" : "") + mm + ":" + String(seconds).padStart(2, "0");
  }

  function schedule(ms) {
    window.clearTimeout(pollTimer);
    pollTimer = window.setTimeout(poll, ms);
  }

  function pollInterval() {
    var base = Number(panel.dataset.pollMs) || 2000;
    var state = panel.dataset.state;
    // Soon after the deadline or a payment the change is imminent: look more often.
    return state === "expiring" || state === "confirming" ? Math.min(base, 1000) : base;
  }

  function startCountdown() {
    var element = document.getElementById("countdown");
    if (!element) { return; }
    // Counted from what the server said was left, so a wrong clock on this device does not matter.
    var deadline = performance.now() + Number(element.dataset.remainingMs || 0);
    function tick() {
      var left = deadline - performance.now();
      element.textContent = format(left);
      if (left <= 0) {
        window.clearInterval(countdownTimer);
        countdownTimer = null;
        schedule(300);
      }
    }
    tick();
    countdownTimer = window.setInterval(tick, 250);
  }

  function poll() {
    window.livePanel.getJson(panel.dataset.statusUrl)
      .then(function (status) {
        if (status.state !== panel.dataset.state) { return refresh(); }
        schedule(pollInterval());
      })
      .catch(function () { schedule(pollInterval() * 2); });
  }

  function refresh() {
    return window.livePanel.replacePanel(panel, panel.dataset.panelUrl, "order-panel")
      .then(function (fresh) {
        panel = fresh;
        if (announcer) { announcer.textContent = "Order status: " + panel.dataset.label; }
        start();
      })
      .catch(function () { schedule(pollInterval() * 2); });
  }

  function guardDoubleSubmit() {
    Array.prototype.forEach.call(panel.querySelectorAll("form"), function (form) {
      form.addEventListener("submit", function (event) {
        // After the browser has captured the clicked button's value, so the chosen card is still sent.
        window.setTimeout(function () {
          if (event.defaultPrevented) { return; }
          Array.prototype.forEach.call(form.querySelectorAll("button"), function (button) { button.disabled = true; });
        }, 0);
      });
    });
  }

  function start() {
    window.clearInterval(countdownTimer);
    window.clearTimeout(pollTimer);
    guardDoubleSubmit();
    if (panel.dataset.final === "true") { return; }
    startCountdown();
    schedule(pollInterval());
  }

  start();
})();
