/* Times in the visitor's own time zone. The server writes every time in UTC; this shows each <time data-local> in
   the visitor's time zone instead (the UTC time stays as its tooltip), and makes each datetime-local input send
   the visitor's UTC offset beside it (a hidden input[data-offset-for]), so that what they typed is read in their
   time zone. Without JavaScript both stay in UTC, as the pages then say. */
(function () {
  "use strict";

  var zone = "";
  try { zone = Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (error) { zone = ""; }

  function formatter(withSeconds) {
    var options = {
      weekday: "short", day: "numeric", month: "short", year: "numeric",
      hour: "2-digit", minute: "2-digit", timeZoneName: "short"
    };
    if (withSeconds) { options.second = "2-digit"; }
    try { return new Intl.DateTimeFormat(undefined, options); } catch (error) { return null; }
  }
  var minutes = formatter(false);
  var seconds = formatter(true);

  function localizeTimes(root) {
    if (!minutes || !seconds) { return; }
    Array.prototype.forEach.call((root || document).querySelectorAll("time[data-local]"), function (element) {
      var date = new Date(element.getAttribute("datetime"));
      if (isNaN(date.getTime()) || element.dataset.localized === "true") { return; }
      element.title = element.textContent.trim();
      element.textContent = (date.getSeconds() ? seconds : minutes).format(date);
      element.dataset.localized = "true";
    });
  }

  function offsetOf(date) {
    // The UTC offset this time zone has at that date ("+02:00"), daylight saving time included.
    var total = -date.getTimezoneOffset();
    var sign = total < 0 ? "-" : "+";
    total = Math.abs(total);
    return sign + String(Math.floor(total / 60)).padStart(2, "0") + ":" + String(total % 60).padStart(2, "0");
  }

  function sendOffsets() {
    var hints = document.querySelectorAll("[data-zone-hint]");
    var fields = document.querySelectorAll("input[data-offset-for]");
    Array.prototype.forEach.call(fields, function (hidden) {
      var input = document.getElementById(hidden.dataset.offsetFor);
      if (!input || !hidden.form) { return; }
      hidden.form.addEventListener("submit", function () {
        // A datetime-local value has no offset: JavaScript reads it as a local time.
        var date = input.value ? new Date(input.value) : null;
        hidden.value = date && !isNaN(date.getTime()) ? offsetOf(date) : "";
      });
    });
    if (fields.length) {
      Array.prototype.forEach.call(hints, function (hint) {
        hint.textContent = "Times are in your time zone" + (zone ? " (" + zone + ")" : "") + ".";
      });
    }
  }

  window.localizeTimes = localizeTimes;  // for content swapped in later (the waiting room's panel)
  localizeTimes(document);
  sendOffsets();
})();
