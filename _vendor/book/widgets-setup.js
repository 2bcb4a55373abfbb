// Runs just before the ipywidgets embedder (jupyter-widgets/embed-amd.js; see nb_ipywidgets_js in
// _config.yml) on pages with widgets.
(function () {
  // 1. Where the embedder finds its font files: beside it in _static/jupyter-widgets/. Its modules take
  //    their asset folder from the URL require.js gives their module name, by default under the page's
  //    own folder (404s), so map the names onto that folder.
  var here = document.currentScript && document.currentScript.src;
  if (here) {
    var assets = new URL("../jupyter-widgets/", here).href;
    window.__jupyter_widgets_assets_path__ = assets;
    if (window.requirejs && window.requirejs.config) {
      window.requirejs.config({
        paths: {
          "@jupyter-widgets/html-manager/dist": assets.replace(/\/$/, ""),
          "@jupyter-widgets": assets.replace(/\/$/, "")
        }
      });
    }
  }
  // 2. ipywidgets typesets widget labels with MathJax 2's MathJax.Hub.Queue; the book ships MathJax 3,
  //    which has no Hub (a page error: "Cannot read properties of undefined (reading 'Queue')"). Give it
  //    a Hub.Queue that typesets with MathJax 3. MathJax (deferred) is defined by DOMContentLoaded, and
  //    the embedder renders the widgets later, on "load".
  document.addEventListener("DOMContentLoaded", function () {
    var mj = window.MathJax;
    if (!mj || mj.Hub || !mj.version || String(mj.version).charAt(0) !== "3") {
      return;
    }
    mj.Hub = {
      Queue: function (command) {
        var element = Array.isArray(command) ? command[2] : null;
        if (!element) {
          return;
        }
        var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
        ready.then(function () {
          return mj.typesetPromise ? mj.typesetPromise([element]) : null;
        }).catch(function (error) {
          console.warn("MathJax could not typeset a widget label:", error);
        });
      }
    };
  });
})();
