// Polls a calibration run's progress and reloads the page once the run is final.
(function () {
  var script = document.getElementById("progress-script");
  var url = script.getAttribute("data-url");
  var bar = document.getElementById("progress-bar");
  var text = document.getElementById("progress-text");
  var status = document.getElementById("run-status");
  function tick() {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (p) {
        var pct = p.total ? (100 * p.done) / p.total : 0;
        bar.style.width = pct.toFixed(1) + "%";
        text.textContent = p.done + " / " + p.total;
        status.textContent = p.status;
        status.className = "status " + p.status;
        if (["succeeded", "failed", "cancelled"].indexOf(p.status) >= 0) {
          window.location.reload();
        } else {
          setTimeout(tick, 1000);
        }
      })
      .catch(function () { status.textContent = "progress unavailable, retrying"; setTimeout(tick, 3000); });
  }
  setTimeout(tick, 1000);
})();
