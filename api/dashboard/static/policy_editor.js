// The policy editor: sliders mirror their number fields, the mode shows its column, and every
// edit posts the form (with its CSRF token) to the what-if preview, which answers per category
// the rate these rules would have had on stored traffic, or the validation errors by field.
(function () {
  var form = document.getElementById("policy-form");
  var panel = document.getElementById("preview");
  var status = document.getElementById("preview-status");
  var timer = null;
  var sent = 0;

  function pct(x) { return x === null || x === undefined ? "—" : (100 * x).toFixed(1) + "%"; }

  function field(name) { return form.querySelector('[name="' + name + '"]'); }

  function showErrors(errors) {
    form.querySelectorAll(".field-error.live").forEach(function (el) {
      el.hidden = true; el.textContent = ""; el.classList.remove("live");
    });
    form.querySelectorAll("input.invalid.live, select.invalid.live").forEach(function (el) {
      el.classList.remove("invalid", "live");
    });
    Object.keys(errors || {}).forEach(function (path) {
      var slot = form.querySelector('.field-error[data-for="' + path + '"]');
      if (slot) { slot.textContent = errors[path]; slot.hidden = false; slot.classList.add("live"); }
      var input = field(path);
      if (input) { input.classList.add("invalid", "live"); }
    });
  }

  function render(data) {
    panel.dataset.requests = data.requests;
    Object.keys(data.categories).forEach(function (name) {
      var c = data.categories[name];
      var row = document.getElementById("preview-" + name);
      if (!row) { return; }
      row.dataset.candidate = c.candidate.rate === null ? "" : c.candidate.rate;
      row.dataset.served = c.served.rate === null ? "" : c.served.rate;
      row.querySelector(".served").textContent = pct(c.served.rate);
      row.querySelector(".candidate").textContent = pct(c.candidate.rate);
      row.querySelector(".interval").textContent =
        c.candidate.low === null ? "—" : pct(c.candidate.low) + " – " + pct(c.candidate.high);
      var delta = c.candidate.rate === null ? null : c.candidate.rate - c.served.rate;
      var cell = row.querySelector(".delta");
      cell.textContent = delta === null ? "—" : (delta >= 0 ? "+" : "") + (100 * delta).toFixed(1) + " pts";
      cell.className = "delta " + (delta > 0.0005 ? "up" : delta < -0.0005 ? "down" : "");
      var bar = document.getElementById("pbar-" + name);
      bar.querySelector(".served-bar").style.width = (100 * (c.served.rate || 0)) + "%";
      bar.querySelector(".candidate-bar").style.width = (100 * (c.candidate.rate || 0)) + "%";
      var whisker = bar.querySelector(".whisker");
      if (c.candidate.low === null) { whisker.style.display = "none"; } else {
        whisker.style.display = "block";
        whisker.style.left = (100 * c.candidate.low) + "%";
        whisker.style.width = Math.max(0.3, 100 * (c.candidate.high - c.candidate.low)) + "%";
      }
    });
    status.textContent = data.requests + " requests of " + data.policy + " between " +
      data.start.slice(0, 16).replace("T", " ") + " and " + data.end.slice(0, 16).replace("T", " ") + " UTC";
  }

  function refresh() {
    var mine = ++sent;
    panel.dataset.state = "loading";
    fetch(panel.dataset.url, {
      method: "POST", body: new FormData(form), credentials: "same-origin", cache: "no-store",
    })
      .then(function (r) { return r.json().then(function (body) { return [r.status, body]; }); })
      .then(function (answer) {
        if (mine !== sent) { return; } // a newer edit is on its way
        showErrors(answer[1].errors);
        if (answer[0] === 200) { render(answer[1]); panel.dataset.state = "ready"; }
        else { status.textContent = "Fix the highlighted fields to see the preview."; panel.dataset.state = "invalid"; }
        panel.dataset.updates = String(Number(panel.dataset.updates || 0) + 1);
      })
      .catch(function () { status.textContent = "Preview unavailable; retrying on the next change."; panel.dataset.state = "error"; });
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(refresh, 200); }

  form.querySelectorAll("input.slider").forEach(function (slider) {
    var number = field(slider.dataset.mirror);
    slider.addEventListener("input", function () { number.value = slider.value; });
    number.addEventListener("input", function () {
      var v = parseFloat(number.value);
      if (!isNaN(v)) { slider.value = v; }
    });
  });
  var mode = document.getElementById("f-mode");
  mode.addEventListener("change", function () { form.className = "editor mode-" + mode.value; });
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  refresh();
})();
