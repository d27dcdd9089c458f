/* What the live pages (an order, a waiting room) share: reading a status as JSON, and fetching a fresh copy of a
   panel to swap in. Loaded before the page's own script. */
(function () {
  "use strict";

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (response) { return response.ok ? response.json() : Promise.reject(response.status); });
  }

  /* Fetches the panel's HTML and puts it in place of ``panel``; resolves to the new element, rejects when the
     answer is not the panel named ``id``. */
  function replacePanel(panel, url, id) {
    return fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (response) { return response.ok ? response.text() : Promise.reject(response.status); })
      .then(function (html) {
        var template = document.createElement("template");
        template.innerHTML = html.trim();
        var fresh = template.content.firstElementChild;
        if (!fresh || fresh.id !== id) { return Promise.reject("unexpected panel"); }
        panel.replaceWith(fresh);
        return fresh;
      });
  }

  window.livePanel = { getJson: getJson, replacePanel: replacePanel };
})();
