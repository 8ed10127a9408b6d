// pgvault dashboard: the only script of the pages (no inline script, no library).
// 1. <time datetime> elements are written in the viewer's time zone (UTC stays in the tooltip).
// 2. Elements with data-job follow that job's server-sent events (/jobs/ID/events): status,
//    phase, bytes, rate, percent and ETA; when the job ends the page reloads to show the result.
// 3. <select data-autosubmit> sends its form when changed (the page works without it).
"use strict";

(function () {
  var UNITS = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];

  function size(value) {
    if (value === null || value === undefined) { return "-"; }
    var amount = value, unit = 0;
    while (Math.abs(amount) >= 1024 && unit < UNITS.length - 1) { amount /= 1024; unit += 1; }
    return unit === 0 ? Math.round(amount) + " bytes" : amount.toFixed(1) + " " + UNITS[unit];
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) { return "-"; }
    if (seconds < 10) { return seconds.toFixed(1) + " s"; }
    var whole = Math.round(seconds), h = Math.floor(whole / 3600), m = Math.floor(whole % 3600 / 60);
    if (h) { return h + " h " + m + " min"; }
    return m ? m + " min " + (whole % 60) + " s" : whole + " s";
  }

  function localTimes(root) {
    var format = new Intl.DateTimeFormat(undefined, {
      year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit",
      timeZoneName: "short"
    });
    root.querySelectorAll("time[datetime]:not([data-fixed])").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when.getTime())) { el.textContent = format.format(when); }
    });
  }

  function setField(box, name, text) {
    box.querySelectorAll('[data-field="' + name + '"]').forEach(function (el) { el.textContent = text; });
  }

  function showJob(box, job) {
    var expected = job.params && job.params.expected_bytes;
    var bar = box.querySelector("progress");
    var percent = null;
    if (job.status === "completed") { percent = 100; }
    else if (expected > 0) { percent = Math.min(99, Math.floor(job.bytes_done * 100 / expected)); }
    setField(box, "status", job.status);
    setField(box, "phase", job.phase || "waiting");
    setField(box, "bytes", size(job.bytes_done));
    setField(box, "rate", job.rate ? size(job.rate) + "/s" : "-");
    setField(box, "percent", percent === null ? "unknown" : percent + " %");
    setField(box, "eta", expected > 0 && job.rate ? duration(Math.max(0, (expected - job.bytes_done) / job.rate)) : "-");
    if (bar && percent !== null) { bar.value = percent; bar.textContent = percent + " %"; }
    var phases = box.querySelector("ol.phases");
    if (phases && job.phase) {
      var items = phases.querySelectorAll("li");
      var last = items.length ? items[items.length - 1] : null;
      if (!last || last.textContent !== job.phase) {
        if (last) { last.classList.remove("current"); }
        var item = document.createElement("li");
        item.textContent = job.phase;
        item.className = "current";
        phases.appendChild(item);
      }
    }
  }

  function follow(box) {
    var id = box.getAttribute("data-job");
    if (!id || !window.EventSource) { return; }
    var source = new EventSource("/jobs/" + encodeURIComponent(id) + "/events");
    source.addEventListener("progress", function (event) { showJob(box, JSON.parse(event.data)); });
    source.addEventListener("end", function (event) {
      source.close();
      showJob(box, JSON.parse(event.data));
      window.setTimeout(function () { window.location.reload(); }, 300);
    });
    source.onerror = function () { box.setAttribute("data-stream", "lost"); };
  }

  document.addEventListener("DOMContentLoaded", function () {
    localTimes(document);
    document.querySelectorAll("[data-job]").forEach(follow);
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      select.addEventListener("change", function () { if (select.form) { select.form.submit(); } });
    });
  });
}());
