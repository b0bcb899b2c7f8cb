// Kumo dashboard: the little script htmx does not cover — uploads with a progress bar (image
// import, bucket files: XHR, raw body, CSRF header) and metric charts (uPlot). Everything else is htmx or plain HTML.
(function () {
  "use strict";
  function csrf() {
    try { return JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"]; } catch (e) { return ""; }
  }
  function apiMessage(xhr) {
    try { var b = JSON.parse(xhr.responseText); return b.message + " (request " + b.request_id + ")"; }
    catch (e) { return "HTTP " + xhr.status + " " + (xhr.statusText || "error"); }
  }
  // Live updates: the project's server-sent events make every fragment listening for
  // `kumo-event` refresh at once (they also poll slowly, as a fallback).
  function setupEvents() {
    var el = document.querySelector("[data-kumo-events]");
    if (!el || !window.EventSource) return;
    var source = new EventSource(el.getAttribute("data-kumo-events"));
    source.addEventListener("kumo", function () { htmx.trigger(document.body, "kumo-event"); });
    source.addEventListener("lagged", function () { htmx.trigger(document.body, "kumo-event"); });
  }
  // POSTs `file` as the raw body of `url` (streamed by the server, never held whole) with the
  // CSRF header; `progress(loaded, total)` follows the upload, `done(error)` gets null or the
  // API's message. The image import and the bucket upload both use it.
  function upload(url, file, contentType, progress, done) {
    var xhr = new XMLHttpRequest();
    xhr.open("POST", url);
    xhr.setRequestHeader("X-CSRF-Token", csrf());
    xhr.setRequestHeader("Content-Type", contentType);
    xhr.upload.onprogress = function (e) { if (e.lengthComputable) progress(e.loaded, e.total); };
    xhr.onload = function () { done(xhr.status >= 200 && xhr.status < 300 ? null : apiMessage(xhr)); };
    xhr.onerror = function () { done("The upload failed: the connection was lost."); };
    xhr.send(file);
  }
  function showError(box, message) {
    box.innerHTML = '<div class="error" role="alert"></div>';
    box.firstChild.textContent = message;
  }
  function setupImport() {
    var form = document.getElementById("import-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var file = document.getElementById("import-file").files[0];
      var name = document.getElementById("import-name").value;
      var desc = document.getElementById("import-description").value;
      var err = document.getElementById("import-error");
      var bar = document.getElementById("import-bar");
      var status = document.getElementById("import-status");
      var submit = document.getElementById("import-submit");
      err.innerHTML = "";
      var max = Number(form.dataset.maxBytes || 0);
      if (file && max && file.size > max) {
        showError(err, "The file is " + file.size + " bytes; this server accepts images up to " + max + " bytes.");
        return;
      }
      var url = form.dataset.importUrl + "?name=" + encodeURIComponent(name) + "&description=" + encodeURIComponent(desc);
      document.getElementById("import-progress").hidden = false;
      submit.disabled = true;
      upload(url, file, "application/octet-stream", function (loaded, total) {
        var pct = Math.round(loaded * 100 / total);
        bar.value = pct;
        status.textContent = pct < 100 ? "Uploading… " + pct + " %" : "Uploaded; checking and converting the image…";
      }, function (error) {
        submit.disabled = false;
        if (!error) { status.textContent = "Imported."; window.location.reload(); return; }
        bar.value = 0; status.textContent = "";
        showError(err, error);
      });
    });
  }
  // Bucket upload: the chosen files one after the other into the folder shown (plus an optional
  // sub-folder), one progress bar over all their bytes; then the object list is refreshed in
  // place, so the finished progress stays visible.
  function setupBucketUpload() {
    var form = document.getElementById("upload-form");
    if (!form) return;
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var files = Array.prototype.slice.call(document.getElementById("upload-files").files);
      var folder = document.getElementById("upload-folder").value.replace(/^\/+|\/+$/g, "");
      var prefix = form.dataset.prefix + (folder ? folder + "/" : "");
      var err = document.getElementById("upload-error");
      var bar = document.getElementById("upload-bar");
      var status = document.getElementById("upload-status");
      var submit = document.getElementById("upload-submit");
      var total = files.reduce(function (n, f) { return n + f.size; }, 0) || 1;
      var sent = 0;
      err.innerHTML = "";
      document.getElementById("upload-progress").hidden = false;
      submit.disabled = true;
      bar.value = 0;
      function next(i) {
        if (i === files.length) {
          submit.disabled = false;
          bar.value = 100;
          status.textContent = "Uploaded " + files.length + (files.length === 1 ? " file." : " files.");
          refreshObjects();
          return;
        }
        var f = files[i];
        var url = form.dataset.uploadUrl + "?key=" + encodeURIComponent(prefix + f.name);
        upload(url, f, f.type || "application/octet-stream", function (loaded) {
          var pct = Math.min(99, Math.round((sent + loaded) * 100 / total));
          bar.value = pct;
          status.textContent = "Uploading " + f.name + " (" + (i + 1) + " of " + files.length + ")… " + pct + " %";
        }, function (error) {
          if (error) {
            submit.disabled = false;
            status.textContent = "Stopped at " + f.name + ".";
            showError(err, f.name + ": " + error);
            refreshObjects();
            return;
          }
          sent += f.size;
          next(i + 1);
        });
      }
      next(0);
    });
  }
  // Replaces the object table with the server's current one (same URL), keeping the page.
  function refreshObjects() {
    fetch(window.location.href, { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("objects");
        var old = document.getElementById("objects");
        if (!fresh || !old) return;
        old.replaceWith(fresh);
        if (window.htmx) htmx.process(fresh);
      })
      .catch(function (e) { console.error(e); });
  }
  function fmt(unit) {
    return function (u, vals) {
      return vals.map(function (v) {
        if (v == null) return "";
        if (unit === "percent") return v.toFixed(0) + " %";
        var suffix = unit === "bytes_per_second" ? "/s" : "";
        var units = ["B", "KiB", "MiB", "GiB", "TiB"], i = 0;
        while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
        return v.toFixed(i ? 1 : 0) + " " + units[i] + suffix;
      });
    };
  }
  var charts = [];
  function drawCharts(range) {
    var box = document.querySelector(".charts[data-metrics-url]");
    if (!box || typeof uPlot === "undefined") return;
    charts.forEach(function (c) { c.destroy(); }); charts = [];
    box.querySelectorAll("figure.chart").forEach(function (fig) {
      var metric = fig.dataset.metric;
      fetch(box.dataset.metricsUrl + "?metric=" + metric + "&range=" + range, { credentials: "same-origin" })
        .then(function (r) { return r.json().then(function (b) { return { ok: r.ok, body: b }; }); })
        .then(function (res) {
          fig.querySelectorAll(".u-wrap, .empty, .error").forEach(function (n) { n.remove(); });
          if (!res.ok) { var e = document.createElement("div"); e.className = "error"; e.textContent = res.body.message; fig.appendChild(e); return; }
          var s = res.body;
          if (!s.points.length) { var m = document.createElement("div"); m.className = "empty"; m.textContent = "No samples in this window yet."; fig.appendChild(m); return; }
          var xs = s.points.map(function (p) { return Date.parse(p.time) / 1000; });
          var ys = s.points.map(function (p) { return p.value; });
          var width = Math.max(260, fig.clientWidth);
          // The x axis always spans the chosen window, ending now, however few points there are.
          var now = Date.now() / 1000, span = range === "1d" ? 86400 : 3600;
          charts.push(new uPlot({ width: width, height: 160, legend: { show: false },
            scales: { x: { time: true, range: [now - span, now] }, y: { range: function (u, min, max) { return [0, max > 0 ? max * 1.15 : 1]; } } },
            series: [{}, { label: metric, stroke: "#2f6fed", fill: "rgba(47,111,237,0.12)", points: { show: xs.length < 3 } }],
            axes: [{}, { values: fmt(s.unit), size: 84 }] }, [xs, ys], fig));
        })
        .catch(function (e) { console.error(e); });
    });
  }
  function setupCharts() {
    var tabs = document.getElementById("metrics-range");
    if (!tabs) return;
    tabs.addEventListener("click", function (ev) {
      var b = ev.target.closest("button"); if (!b) return;
      tabs.querySelectorAll("button").forEach(function (x) { x.classList.toggle("active", x === b); });
      drawCharts(b.dataset.range);
    });
    drawCharts("1h");
    // Live: redraw the chosen window every 15 s.
    setInterval(function () {
      var active = tabs.querySelector("button.active");
      drawCharts(active ? active.dataset.range : "1h");
    }, 15000);
  }
  document.addEventListener("DOMContentLoaded", function () { setupEvents(); setupImport(); setupBucketUpload(); setupCharts(); });
})();
