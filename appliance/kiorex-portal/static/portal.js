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
  // Keep what was typed in a half-filled form on the server, so that it survives a session
  // timeout and a new sign-in: saved a moment after each change, asked for when the form is
  // shown again, forgotten by the server once the form is sent.
  var csrf = {};
  try { csrf = JSON.parse(body.getAttribute("hx-headers") || "{}"); } catch (e) { csrf = {}; }
  document.querySelectorAll("form[data-draft]").forEach(function (form) {
    var url = "/drafts/" + form.getAttribute("data-draft");
    fetch(url, { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (saved) {
        Object.keys(saved || {}).forEach(function (name) {
          var field = form.elements[name];
          if (field && !field.value && field.type !== "hidden" && field.type !== "password") {
            field.value = saved[name];
          }
        });
      })
      .catch(function () { /* no draft: an empty form */ });
    var timer = null;
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(function () {
        var data = {};
        Array.prototype.forEach.call(form.elements, function (f) {
          if (f.name && f.type !== "hidden" && f.type !== "password" && f.type !== "submit") {
            data[f.name] = f.value;
          }
        });
        var headers = { "Content-Type": "application/json" };
        Object.keys(csrf).forEach(function (k) { headers[k] = csrf[k]; });
        fetch(url, { method: "PUT", credentials: "same-origin", headers: headers, body: JSON.stringify(data) });
      }, 700);
    });
  });
  // Documents: the viewer opens in the page; uploads go to the documents API (drag and drop or
  // the file field), with the session's CSRF token, and the chart reloads when one is stored.
  document.querySelectorAll("a.view-document").forEach(function (link) {
    link.addEventListener("click", function (event) {
      event.preventDefault();
      var viewer = document.getElementById("viewer");
      viewer.hidden = false;
      viewer.src = link.getAttribute("href");
    });
  });
  var upload = document.getElementById("upload");
  if (upload) {
    var status = document.getElementById("upload-status");
    var send = function (file) {
      var data = new FormData();
      data.append("category", upload.elements.category.value);
      data.append("title", upload.elements.title.value || file.name);
      data.append("file", file, file.name);
      status.textContent = "Uploading and checking " + file.name + " …";
      fetch("/api/v1/patients/" + upload.getAttribute("data-patient") + "/documents", {
        method: "POST", credentials: "same-origin", body: data,
        headers: { "X-CSRF-Token": upload.getAttribute("data-csrf") }
      }).then(function (r) {
        if (r.ok) { window.location.reload(); return; }
        return r.json().then(function (p) {
          status.textContent = (p.title || "The upload was refused") + " (reference " + (p.request_id || "-") + ")";
        });
      }).catch(function () { status.textContent = "The upload did not reach the server; try again."; });
    };
    upload.addEventListener("submit", function (event) {
      event.preventDefault();
      var file = upload.elements.file.files[0];
      if (file) { send(file); }
    });
    var zone = document.getElementById("drop-zone");
    zone.addEventListener("dragover", function (event) { event.preventDefault(); });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      if (event.dataTransfer.files.length) { send(event.dataTransfer.files[0]); }
    });
  }
})();
