/* The inspector's only script: live lists by short polling, copy-as-curl, tidy filter URLs.
   Records from the server are put in the page with textContent or setAttribute on known
   attributes, never as HTML. The one exception is the activity chart, which the server
   draws: the live view swaps in the server's own rendering of it (parsed with DOMParser,
   which runs no script; the template escapes every value). Short polls (one small request
   every 2 s) keep no request open, so the receiver's sync gunicorn workers are never
   pinned. */
(function () {
  "use strict";

  var POLL_MS = 2000;
  var RETRY_MS = 10000;

  function when(iso) {
    return iso ? String(iso).replace("T", " ").slice(0, 19) : "";
  }

  function text(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function field(row, name) {
    return row.querySelector('[data-field="' + name + '"]');
  }

  function setText(row, name, value) {
    var element = field(row, name);
    if (element) {
      element.textContent = text(value);
    }
    return element;
  }

  function setBadge(row, name, prefix, value) {
    var element = row.querySelector('[data-badge="' + name + '"]');
    if (element) {
      element.className = "badge " + prefix + text(value).replace(/[^a-z0-9_-]/gi, "");
      element.textContent = text(value);
      element.hidden = !value;
    }
  }

  /* This page's URL with one filter set: for the source badge and subject links. */
  function filterHref(name, value) {
    var url = new URL(window.location.href);
    url.searchParams.set(name, value);
    url.searchParams.delete("cursor");
    return url.pathname + url.search;
  }

  function withParam(path, name, value) {
    var url = new URL(path, window.location.href);
    url.searchParams.set(name, value);
    return url.pathname + url.search;
  }

  function fillEvent(row, event, urls) {
    row.setAttribute("data-id", text(event.id));
    var time = setText(row, "received_at", when(event.received_at));
    time.setAttribute("datetime", text(event.received_at));
    setText(row, "source", event.source);
    row.querySelector('[data-filter="source"]').setAttribute("href", filterHref("source", text(event.source)));
    var link = setText(row, "event_type", event.event_type);
    link.setAttribute("href", urls.event + Number(event.id));
    setText(row, "subject_type", event.subject_type);
    var subject = setText(row, "subject_id", event.subject_id);
    if (event.subject_id) {
      subject.setAttribute("href", filterHref("subject_id", text(event.subject_id)));
    } else {
      subject.removeAttribute("href");
    }
    setBadge(row, "sig", "sig-", event.signature_status);
    setBadge(row, "dispatch", "dispatch-", event.dispatch_status);
    var count = setText(row, "delivery_count", event.delivery_count);
    count.className = event.delivery_count > 1 ? "dup" : "";
  }

  function fillDelivery(row, delivery, urls) {
    row.setAttribute("data-id", text(delivery.id));
    row.querySelectorAll('[data-link="delivery"]').forEach(function (link) {
      link.setAttribute("href", urls.delivery + Number(delivery.id));
    });
    var time = setText(row, "received_at", when(delivery.received_at));
    time.setAttribute("datetime", text(delivery.received_at));
    setText(row, "id", delivery.id);
    var code = row.querySelector('[data-badge="code"]');
    code.className = "badge code-" + Math.floor(Number(delivery.status_code) / 100) + "xx";
    code.textContent = text(delivery.status_code);
    setText(row, "path", delivery.path);
    setText(row, "source", delivery.source || "\u2014");
    setBadge(row, "sig", "sig-", delivery.signature_status);
    var event = row.querySelector('[data-link="event"]');
    if (delivery.event_id !== null && delivery.event_id !== undefined) {
      event.hidden = false;
      event.setAttribute("href", urls.event + Number(delivery.event_id));
      setText(row, "event_id", delivery.event_id);
    } else {
      event.hidden = true;
    }
    field(row, "duplicate").hidden = !delivery.duplicate;
    setText(row, "error", delivery.error);
  }

  function startLive(tbody) {
    var kind = tbody.getAttribute("data-live");
    var feed = tbody.getAttribute("data-feed");
    var api = tbody.getAttribute("data-api");
    var after = Number(tbody.getAttribute("data-after")) || 0;
    var pageLimit = api ? Number(new URL(api, window.location.href).searchParams.get("limit")) || 50 : 50;
    var urls = {
      event: tbody.getAttribute("data-event-url"),
      delivery: tbody.getAttribute("data-delivery-url")
    };
    var template = document.getElementById("row-template");
    var status = document.getElementById("live-status");
    var empty = document.getElementById("empty");
    var fill = kind === "deliveries" ? fillDelivery : fillEvent;
    var timer = null;
    var busy = false;
    var stopped = false;

    function setStatus(message, state) {
      if (status) {
        status.textContent = message;
        status.className = "live" + (state ? " " + state : "");
      }
    }

    function getJSON(path) {
      return fetch(path, {
        headers: { "Accept": "application/json" },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (response) {
        if (response.status === 401) {
          var error = new Error("signed out");
          error.signedOut = true;
          throw error;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      });
    }

    /* The chart above the list, redrawn by the server when deliveries arrived. */
    function refreshChart() {
      var chart = document.getElementById("activity");
      var source = chart && chart.getAttribute("data-activity");
      if (!source) {
        return null;
      }
      return fetch(source, {
        headers: { "Accept": "text/html" },
        credentials: "same-origin",
        cache: "no-store"
      }).then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      }).then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("activity");
        if (fresh) {
          var table = chart.querySelector("details");
          var freshTable = fresh.querySelector("details");
          if (table && freshTable) {
            freshTable.open = table.open;
          }
          chart.replaceWith(document.importNode(fresh, true));
        }
      });
    }

    function topId() {
      var first = tbody.querySelector("tr[data-id]");
      return first ? Number(first.getAttribute("data-id")) : 0;
    }

    /* items newest first: new ones go on top (highlighted), known ones are refreshed. */
    function merge(items) {
      var top = topId();
      var known = {};
      var fresh = [];
      tbody.querySelectorAll("tr[data-id]").forEach(function (row) {
        known[row.getAttribute("data-id")] = row;
      });
      items.forEach(function (item) {
        var row = known[text(item.id)];
        if (row) {
          fill(row, item, urls);
        } else if (Number(item.id) > top) {
          row = template.content.firstElementChild.cloneNode(true);
          fill(row, item, urls);
          row.classList.add("fresh");
          fresh.push(row);
        }
      });
      for (var i = fresh.length - 1; i >= 0; i -= 1) {
        tbody.insertBefore(fresh[i], tbody.firstChild);
      }
      if (fresh.length && empty) {
        empty.hidden = true;
      }
    }

    function poll() {
      return getJSON(withParam(withParam(feed, "after", after), "limit", 500)).then(function (answer) {
        var arrived = answer.deliveries || [];
        var redrawn = null;
        if (arrived.length) {
          after = arrived[arrived.length - 1].id;
          redrawn = refreshChart();
        }
        if (kind === "deliveries") {
          merge(arrived.slice().reverse());
          return redrawn;
        }
        // Any delivery may be a new event or a duplicate of a shown one; pending and
        // retrying rows change once their handlers ran.
        if (arrived.length || tbody.querySelector(".dispatch-pending, .dispatch-retrying")) {
          // Enough rows to cover everything that arrived since the last poll.
          var limit = Math.min(500, Math.max(pageLimit, arrived.length));
          return Promise.all([redrawn, getJSON(withParam(api, "limit", limit)).then(function (page) {
            merge(page.events || []);
          })]);
        }
        return redrawn;
      });
    }

    function schedule(ms) {
      if (!stopped) {
        timer = window.setTimeout(tick, ms);
      }
    }

    function tick() {
      timer = null;
      if (stopped) {
        return;
      }
      if (document.hidden) {
        setStatus("Paused while this tab is hidden", "paused");
        return;
      }
      busy = true;
      poll().then(function () {
        setStatus("Live", "");
        schedule(POLL_MS);
      }, function (error) {
        if (error && error.signedOut) {
          stopped = true;
          setStatus("Signed out: reload the page to sign in", "offline");
        } else {
          setStatus("Cannot reach the receiver; retrying", "offline");
          schedule(RETRY_MS);
        }
      }).then(function () {
        busy = false;
      });
    }

    document.addEventListener("visibilitychange", function () {
      if (!document.hidden && timer === null && !busy && !stopped) {
        tick();
      }
    });
    schedule(POLL_MS);
  }

  function copyText(value) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(value);
    }
    return new Promise(function (resolve, reject) {
      var area = document.createElement("textarea");
      area.value = value;
      area.setAttribute("readonly", "");
      area.className = "offscreen";
      document.body.appendChild(area);
      area.select();
      var copied = false;
      try {
        copied = document.execCommand("copy");
      } catch (ignored) {
        copied = false;
      }
      document.body.removeChild(area);
      if (copied) {
        resolve();
      } else {
        reject(new Error("copy failed"));
      }
    });
  }

  function setUpCopy(button) {
    var label = button.textContent;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) {
        return;
      }
      copyText(source.textContent).then(function () {
        button.textContent = "Copied";
        button.setAttribute("data-copied", "yes");
      }, function () {
        button.textContent = "Select and copy it below";
        var details = source.closest("details");
        if (details) {
          details.open = true;
        }
      });
      window.setTimeout(function () {
        button.textContent = label;
      }, 2000);
    });
  }

  function setUpFilterForm(form) {
    // Leave empty fields out of the URL so shared links stay short.
    form.addEventListener("submit", function () {
      form.querySelectorAll("input[name], select[name]").forEach(function (element) {
        if (element.value === "" || (element.type === "checkbox" && !element.checked)) {
          element.disabled = true;
        }
      });
    });
  }

  function setUpReplayForm(form) {
    // Ticking a handler means "only these".
    form.addEventListener("change", function (event) {
      if (event.target.name === "handler" && event.target.checked) {
        var chosen = form.querySelector('input[name="mode"][value="chosen"]');
        if (chosen) {
          chosen.checked = true;
        }
      }
    });
  }

  /* The chart's bars are one tab stop: the arrow keys (and Home, End) move between them. A
     listener on the document, so a chart the live view swapped in works the same. */
  document.addEventListener("keydown", function (event) {
    var bar = event.target.closest && event.target.closest("svg.chart a.bar");
    if (!bar) {
      return;
    }
    var bars = Array.prototype.slice.call(bar.parentNode.querySelectorAll("a.bar"));
    var index = bars.indexOf(bar);
    var next = {
      ArrowLeft: index - 1, ArrowDown: index - 1, ArrowRight: index + 1, ArrowUp: index + 1,
      Home: 0, End: bars.length - 1
    }[event.key];
    if (next === undefined) {
      return;
    }
    event.preventDefault();
    next = Math.max(0, Math.min(bars.length - 1, next));
    bars.forEach(function (other, n) {
      other.setAttribute("tabindex", n === next ? "0" : "-1");
    });
    bars[next].focus();
  });

  window.addEventListener("pageshow", function () {
    document.querySelectorAll("form[data-filter-form] [disabled]").forEach(function (element) {
      element.disabled = false;
    });
  });

  // Filters without a value start folded on a phone, so the first row shows without scrolling.
  if (window.matchMedia && window.matchMedia("(max-width: 760px)").matches) {
    document.querySelectorAll("details[data-narrow-closed]").forEach(function (details) {
      details.open = false;
    });
  }
  document.querySelectorAll("form[data-filter-form]").forEach(setUpFilterForm);
  document.querySelectorAll("form[data-replay-form]").forEach(setUpReplayForm);
  document.querySelectorAll("[data-copy]").forEach(setUpCopy);
  var live = document.querySelector("[data-live]");
  if (live) {
    startLive(live);
  }
}());
