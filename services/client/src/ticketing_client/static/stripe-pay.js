/* Real Stripe mode only: Stripe's own card element collects the card; its token is posted like the test cards. */
(function () {
  "use strict";

  var form = document.getElementById("stripe-form");
  if (!form || typeof window.Stripe !== "function") { return; }
  var stripe = window.Stripe(form.dataset.publishableKey);
  var card = stripe.elements().create("card");
  card.mount("#card-element");
  var errors = document.getElementById("card-errors");
  var tokenInput = document.getElementById("stripe-token");

  card.on("change", function (event) { errors.textContent = event.error ? event.error.message : ""; });

  form.addEventListener("submit", function (event) {
    if (tokenInput.value) { return; }
    event.preventDefault();
    stripe.createToken(card).then(function (result) {
      if (result.error) {
        errors.textContent = result.error.message;
        return;
      }
      tokenInput.value = result.token.id;
      form.submit();
    });
  });
})();
