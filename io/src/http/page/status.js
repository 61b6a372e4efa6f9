// The status page's live refresh and actions. The page is whole without this: it
// fetches itself again every 2 s (with the API key, when one is kept in this tab's
// session storage) and swaps in the new content; the stop buttons call the API.
(function () {
  "use strict";
  var STORAGE = "acemux-api-key";
  var keyRequired = document.body.dataset.keyRequired === "true";
  var form = document.getElementById("key-form");
  var input = document.getElementById("key");
  var status = document.getElementById("refreshed");
  var busy = false;

  function key() {
    return sessionStorage.getItem(STORAGE) || "";
  }

  function headers() {
    return key() ? { "X-API-Key": key() } : {};
  }

  function say(text, stale) {
    status.textContent = text;
    status.classList.toggle("stale", !!stale);
  }

  function refresh() {
    if (busy) {
      return Promise.resolve();
    }
    busy = true;
    return fetch(location.pathname + location.search, { headers: headers(), cache: "no-store" })
      .then(function (response) {
        if (!response.ok) {
          throw new Error("the page answered " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        var fresh = page.getElementById("main");
        if (fresh) {
          document.getElementById("main").replaceWith(document.adoptNode(fresh));
        }
        say("updated " + new Date().toLocaleTimeString(), false);
      })
      .catch(function (error) {
        say("not updated: " + error.message, true);
      })
      .then(function () {
        busy = false;
      });
  }

  if (keyRequired) {
    form.hidden = false;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      var given = input.value.trim();
      if (given) {
        sessionStorage.setItem(STORAGE, given);
        input.value = "";
        refresh();
      }
    });
    document.getElementById("forget-key").addEventListener("click", function () {
      sessionStorage.removeItem(STORAGE);
      refresh();
    });
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.stop");
    if (!button) {
      return;
    }
    if (keyRequired && !key()) {
      say("enter the API key to stop a stream", true);
      input.focus();
      return;
    }
    button.disabled = true;
    var id = button.dataset.streamId;
    fetch("/streams/" + encodeURIComponent(id), { method: "DELETE", headers: headers() })
      .then(function (response) {
        if (response.ok) {
          say("stopped " + id, false);
          return;
        }
        return response.json().then(
          function (body) {
            say("stop failed: " + (body.message || response.status), true);
          },
          function () {
            say("stop failed: " + response.status, true);
          }
        );
      })
      .catch(function (error) {
        say("stop failed: " + error.message, true);
      })
      .then(refresh);
  });

  if (keyRequired && key()) {
    refresh();
  }
  setInterval(refresh, 2000);
})();
