// Kiorex staff portal: the only script besides htmx. No inline scripts anywhere (the
// Content-Security-Policy forbids them).
(function () {
  "use strict";
  var body = document.body;
  // The session timeout warning: two minutes before the idle limit, say so and offer to stay.
  var ends = Date.parse(body.getAttribute("data-session-ends") || "");
  var warning = document.getElementById("session-warning");
  if (!isNaN(ends) && warning) {
    var shown = false;
    setInterval(function () {
      var left = ends - Date.now();
      if (left < 120000 && !shown) {
        warning.hidden = false;
        shown = true;
      }
      if (left <= 0) {
        window.location.assign("/signin?expired=1");
      }
    }, 5000);
    var stay = document.getElementById("stay-signed-in");
    if (stay) {
      stay.addEventListener("click", function () {
        fetch("/api/v1/auth/session", { credentials: "same-origin" })
          .then(function (r) { return r.json(); })
          .then(function (s) {
            ends = Date.parse(s.ends_at);
            warning.hidden = true;
            shown = false;
          });
      });
    }
  }
  // Keep what was typed in a half-filled form if the page is left or the session ends:
  // saved in this browser tab only, restored when the form is shown again, cleared on submit.
  document.querySelectorAll("form[data-draft]").forEach(function (form) {
    var key = "kiorex-draft:" + form.getAttribute("data-draft");
    try {
      var saved = JSON.parse(sessionStorage.getItem(key) || "{}");
      Object.keys(saved).forEach(function (name) {
        var field = form.elements[name];
        if (field && !field.value && field.type !== "hidden") { field.value = saved[name]; }
      });
    } catch (e) { /* a damaged draft is simply ignored */ }
    form.addEventListener("input", function () {
      var data = {};
      Array.prototype.forEach.call(form.elements, function (f) {
        if (f.name && f.type !== "hidden" && f.type !== "password") { data[f.name] = f.value; }
      });
      sessionStorage.setItem(key, JSON.stringify(data));
    });
    form.addEventListener("submit", function () { sessionStorage.removeItem(key); });
  });
})();
