// Live job status: poll the JSON API and update the page in place; reload once the job has finished.
// Without JavaScript the page refreshes itself (a <noscript> meta refresh).
(function () {
  "use strict";
  var root = document.getElementById("job");
  if (!root || !root.dataset.pollUrl) return;
  var url = root.dataset.pollUrl;
  var interval = 1000 * (parseFloat(root.dataset.pollInterval) || 2);
  var finished = ["succeeded", "failed", "cancelled"];

  function field(name) {
    return root.querySelector('[data-field="' + name + '"]');
  }
  function setText(name, text) {
    var element = field(name);
    if (element && element.textContent !== text) element.textContent = text;
  }
  function show(job) {
    var badge = field("status");
    if (badge) {
      badge.textContent = job.status;
      badge.className = "badge js-" + job.status;
    }
    setText("phase", job.phase || (job.status === "queued" ? "waiting for a worker" : "—"));
    var percent = Math.round((job.progress || 0) * 100) + "%";
    setText("progress", percent);
    var bar = field("progress-bar");
    if (bar) {
      bar.value = job.progress || 0;
      bar.textContent = percent;
    }
    setText("attempts", job.attempts + " of " + job.max_attempts);
    if (job.updated_at) setText("updated", job.updated_at.slice(0, 16).replace("T", " ") + " UTC");
    var error = field("error");
    if (error) {
      error.hidden = !job.last_error;
      error.textContent = job.last_error || "";
    }
  }
  function poll() {
    fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (job) {
        if (job) {
          show(job);
          if (finished.indexOf(job.status) >= 0) {
            window.location.reload();
            return;
          }
        }
        window.setTimeout(poll, interval);
      })
      .catch(function () {
        window.setTimeout(poll, interval * 2); // the server is restarting or the network blinked
      });
  }
  window.setTimeout(poll, interval);
})();
