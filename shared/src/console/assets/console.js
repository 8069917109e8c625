// edgeplane console: enhancements only; every form works without this file.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  // The pages a mailed link lands on (signing in, accepting an invitation): the token travels
  // in the fragment, which the server never sees. Put it in the form; the person still presses
  // the button (mail scanners that prefetch the link never post it).
  var field = document.querySelector("input[data-fragment-token]");
  if (field && location.hash.indexOf("#token=") === 0) {
    field.value = decodeURIComponent(location.hash.slice("#token=".length));
    history.replaceState(null, "", location.pathname);
  }
  // The sign-in page of someone sent here from another page: that page's fragment (an
  // invitation's token) never reaches the server, so add it to where they go back to.
  var back = document.querySelectorAll("[data-return-to]");
  if (back.length && location.hash.length > 1) {
    back.forEach(function (el) {
      if (el.tagName === "INPUT") {
        el.value += location.hash;
        return;
      }
      var u = new URL(el.href);
      var next = u.searchParams.get("next");
      if (next !== null) {
        u.searchParams.set("next", next + location.hash);
        el.href = u.toString();
      }
    });
    history.replaceState(null, "", location.pathname + location.search);
  }
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (el && navigator.clipboard) navigator.clipboard.writeText(el.textContent.trim());
    });
  });

  // A version upload: send the file itself (the body the JSON route takes, never multipart)
  // and show how much of it went. The server's answer is the model's page (after a redirect)
  // or the form again with its error, whose words are shown here.
  document.querySelectorAll("form[data-progress]").forEach(function (form) {
    var bar = document.getElementById(form.getAttribute("data-progress"));
    var status = document.getElementById(form.getAttribute("data-status"));
    var input = form.querySelector("input[type=file]");
    if (!bar || !input || !window.XMLHttpRequest) return;
    bar.hidden = false;
    if (bar.labels) bar.labels.forEach(function (l) { l.hidden = false; });
    form.addEventListener("submit", function (e) {
      if (!input.files.length) return;
      e.preventDefault();
      var file = input.files[0];
      var xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("content-type", "application/octet-stream");
      bar.max = file.size || 1;
      bar.value = 0;
      status.textContent = "Uploading " + file.name + "…";
      xhr.upload.addEventListener("progress", function (ev) {
        if (ev.lengthComputable) {
          bar.max = ev.total;
          bar.value = ev.loaded;
        }
      });
      xhr.addEventListener("load", function () {
        if (xhr.status >= 200 && xhr.status < 300) {
          bar.value = bar.max;
          location.assign(xhr.responseURL || location.href);
          return;
        }
        var page = new DOMParser().parseFromString(xhr.responseText, "text/html");
        var err = page.getElementById("form-error") || page.querySelector("[role=alert]");
        status.textContent = err ? err.textContent.trim() : "The upload failed (status " + xhr.status + ").";
      });
      xhr.addEventListener("error", function () {
        status.textContent = "The upload failed: the connection was lost.";
      });
      xhr.send(file);
    });
  });
});
