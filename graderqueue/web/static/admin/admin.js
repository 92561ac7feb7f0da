// graderqueue admin: confirmations and an opt-in auto-refresh. Pages work without it.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  });
  var key = "gq-autorefresh:" + location.pathname;
  document.querySelectorAll("input[data-autorefresh]").forEach(function (box) {
    box.checked = localStorage.getItem(key) === "1";
    var timer = null;
    function arm() {
      if (timer) clearTimeout(timer);
      timer = box.checked ? setTimeout(function () { location.reload(); }, 10000) : null;
    }
    box.addEventListener("change", function () {
      localStorage.setItem(key, box.checked ? "1" : "0");
      arm();
    });
    arm();
  });
});
