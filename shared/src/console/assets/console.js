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
  document.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () {
      var el = document.getElementById(b.getAttribute("data-copy"));
      if (el && navigator.clipboard) navigator.clipboard.writeText(el.textContent.trim());
    });
  });
});
