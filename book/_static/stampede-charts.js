/* Draws the charts that stampede.charts.enable_offline() writes into notebook outputs.
 *
 * Each chart output is an inline <script> calling window.stampedeChart(document.currentScript,
 * spec). Needs vega-bundle.js (window.vegaEmbed) loaded first; both come from book/_static via
 * html_js_files, so nothing is fetched from the network. Each chart container records its state
 * in data-stampede-state ("pending", "drawn" or "error") for tools/check_book.py to read.
 */
(function () {
  "use strict";
  var EMBED_OPTIONS = {
    renderer: "svg",
    // The editor/source links would point at a web service: keep only the local exports.
    actions: { export: true, source: false, compiled: false, editor: false },
  };

  function fail(el, message) {
    el.setAttribute("data-stampede-state", "error");
    el.setAttribute("data-stampede-error", message);
    el.textContent = "Chart could not be drawn: " + message;
  }

  window.stampedeChart = function (script, spec) {
    var el = document.createElement("div");
    el.className = "stampede-chart";
    el.setAttribute("data-stampede-state", "pending");
    script.parentNode.insertBefore(el, script);
    if (typeof window.vegaEmbed !== "function") {
      fail(el, "vegaEmbed is not loaded (book/_static/vega-bundle.js)");
      return;
    }
    window
      .vegaEmbed(el, spec, EMBED_OPTIONS)
      .then(function () {
        var drawing = el.querySelector("svg.marks, canvas.marks");
        var box = drawing ? drawing.getBoundingClientRect() : { width: 0, height: 0 };
        el.setAttribute("data-stampede-size", Math.round(box.width) + "x" + Math.round(box.height));
        if (box.width > 0 && box.height > 0) {
          el.setAttribute("data-stampede-state", "drawn");
        } else {
          el.setAttribute("data-stampede-state", "error");
          el.setAttribute("data-stampede-error", "drawing has no size");
        }
      })
      .catch(function (err) {
        fail(el, String((err && err.message) || err));
      });
  };
})();
