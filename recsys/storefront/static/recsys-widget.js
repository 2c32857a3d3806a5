/*! recsys-widget.js: recommendation lists for product and cart pages (plain ES2017, no framework).
 *
 * Include once per page:
 *   <script src="https://API/static/recsys-widget.js" data-api="https://API"
 *           data-product-url="/products/{product_id}" defer></script>
 *   data-api          base URL of the recsys API (default: where this script came from)
 *   data-product-url  link of a recommended product; {product_id} is replaced (default: no link)
 *   data-customer-id  the signed-in customer, if any (sent with requests and events)
 *   data-currency     ISO code to format prices with, e.g. "EUR" (default: plain number)
 *   data-key          the API's public storefront key, sent as X-Storefront-Key (never the
 *                     server key: this page is public)
 *
 * Place a container where a list should appear:
 *   <div data-recsys="also-viewed" data-product-id="P00180" data-k="6"></div>
 *   <div data-recsys="bought-together" data-product-id="P00180"></div>
 *   <div data-recsys="upsell" data-product-id="P00180" data-k="4"></div>  (pricier alternatives)
 *   <div data-recsys="cart-add-ons" data-cart='[{"product_id":"P00180","quantity":1}]'></div>
 *   <div data-recsys="recently-viewed" data-product-id="P00180"></div>  (the product left out;
 *        the signed-in customer's list, else this session's: from the events posted)
 *   <div data-recsys="trending" data-category="Electronics"></div>  (category optional)
 *   optional: data-title (heading), data-placement (event placement; default the list kind)
 * or from code: RecsysWidget.renderCart(el, [{product_id, quantity}]), RecsysWidget.render(el).
 *
 * Events (POST /v1/events, fetch keepalive): one "impression" per rendered list and one
 * "click" per clicked item, each with the response's request_id, the placement, the session
 * id (kept in localStorage, renewed after 30 idle minutes) and, for clicks, product_id and
 * position (1-based). RecsysWidget.track(type, fields) sends any other event (view, add_to_cart).
 * Each event carries a random event_id, so a retried one is stored once.
 * Product names are set as text, never parsed as HTML. Errors leave the container empty
 * (data-recsys-state="error") and log a console warning.
 */
(function () {
  "use strict";

  var TITLES = {
    "also-viewed": "Customers also viewed",
    "bought-together": "Frequently bought together",
    "upsell": "Worth the upgrade",
    "cart-add-ons": "Complete your order",
    "recently-viewed": "Recently viewed",
    "trending": "Trending now"
  };
  var SESSION_KEY = "recsys.session";
  var SESSION_IDLE_MS = 30 * 60 * 1000;
  var script = document.currentScript || document.querySelector("script[src*='recsys-widget']");
  var config = script ? script.dataset : {};
  var api = (config.api || (script ? new URL(script.src, location.href).origin : "")).replace(/\/+$/, "");
  var memorySession = null;

  function randomId() {
    var bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function sessionId() {
    var now = Date.now();
    var session = memorySession;
    try {
      session = JSON.parse(localStorage.getItem(SESSION_KEY)) || session;
    } catch (err) { /* storage blocked or corrupt: keep the in-memory session */ }
    if (!session || typeof session.id !== "string" || now - session.seen > SESSION_IDLE_MS) {
      session = { id: randomId() };
    }
    session.seen = now;
    memorySession = session;
    try {
      localStorage.setItem(SESSION_KEY, JSON.stringify(session));
    } catch (err) { /* the in-memory session will do */ }
    return session.id;
  }

  function shopper() {
    var who = { session_id: sessionId() };
    if (config.customerId) who.customer_id = config.customerId;
    return who;
  }

  function headers(json) {
    var found = json ? { "Content-Type": "application/json" } : {};
    if (config.key) found["X-Storefront-Key"] = config.key;
    return found;
  }

  function track(eventType, fields) {
    var body = Object.assign({ event_type: eventType, event_id: randomId() }, shopper(), fields);
    return fetch(api + "/v1/events", {
      method: "POST", keepalive: true, headers: headers(true),
      body: JSON.stringify(body)
    }).then(function (response) {
      if (!response.ok) console.warn("recsys: event " + eventType + " refused: " + response.status);
    }).catch(function (err) { console.warn("recsys: event " + eventType + " not sent", err); });
  }

  function request(kind, el, cart) {
    var k = el.dataset.k || "6";
    var who = shopper();
    if (kind === "cart-add-ons") {
      return fetch(api + "/v1/cart/add-ons?k=" + encodeURIComponent(k), {
        method: "POST", headers: headers(true),
        body: JSON.stringify(Object.assign({ items: cart }, who))
      });
    }
    if (kind === "recently-viewed") {
      var recent = new URLSearchParams({ k: k });
      if (el.dataset.productId) recent.set("exclude", el.dataset.productId);
      // the session's own history (a customer's needs the shop's server key or a token)
      return fetch(api + "/v1/sessions/" + encodeURIComponent(who.session_id) +
                   "/recently-viewed?" + recent, { headers: headers(false) });
    }
    if (kind === "trending") {
      var trend = new URLSearchParams(Object.assign({ k: k }, who));
      if (el.dataset.category) trend.set("category", el.dataset.category);
      return fetch(api + "/v1/trending?" + trend, { headers: headers(false) });
    }
    var product = el.dataset.productId;
    if (!product) return Promise.reject(new Error("data-product-id is missing"));
    var query = new URLSearchParams(Object.assign({ k: k }, who));
    return fetch(api + "/v1/items/" + encodeURIComponent(product) + "/" + kind + "?" + query,
                 { headers: headers(false) });
  }

  function formatPrice(price) {
    if (typeof price !== "number") return "";
    if (!config.currency) return price.toFixed(2);
    return new Intl.NumberFormat(undefined, { style: "currency", currency: config.currency })
      .format(price);
  }

  function element(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function draw(el, kind, body, placement) {
    var section = element("section", "recsys-list recsys-" + kind);
    section.appendChild(element("h2", "recsys-title", el.dataset.title || TITLES[kind]));
    var list = element("ol", "recsys-items");
    body.items.forEach(function (item, i) {
      var li = element("li", "recsys-item");
      li.dataset.productId = item.product_id;
      li.dataset.position = String(i + 1);
      var link = element(config.productUrl ? "a" : "span", "recsys-link");
      if (config.productUrl) {
        link.href = config.productUrl.replace("{product_id}", encodeURIComponent(item.product_id));
      }
      link.appendChild(element("span", "recsys-name", item.name || item.product_id));
      link.appendChild(element("span", "recsys-price", formatPrice(item.price)));
      li.appendChild(link);
      list.appendChild(li);
    });
    list.addEventListener("click", function (event) {
      var li = event.target.closest(".recsys-item");
      if (!li) return;
      track("click", { request_id: body.request_id, placement: placement,
                       product_id: li.dataset.productId, position: Number(li.dataset.position) });
    });
    section.appendChild(list);
    el.replaceChildren(section);
  }

  function render(el, cart) {
    var kind = el.dataset.recsys;
    if (!TITLES[kind]) {
      console.warn("recsys: unknown list " + kind);
      return Promise.resolve();
    }
    if (kind === "cart-add-ons" && cart === undefined) {
      try {
        cart = JSON.parse(el.dataset.cart || "[]");
      } catch (err) {
        cart = [];
        console.warn("recsys: data-cart is not JSON", err);
      }
    }
    el.dataset.recsysState = "loading";
    if (kind === "cart-add-ons" && !(cart && cart.length)) {
      el.replaceChildren();
      el.dataset.recsysState = "empty";
      return Promise.resolve();
    }
    var placement = el.dataset.placement || kind.replace(/-/g, "_");
    return request(kind, el, cart).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    }).then(function (body) {
      if (!body.items.length) {
        el.replaceChildren();
        el.dataset.recsysState = "empty";
        return;
      }
      draw(el, kind, body, placement);
      el.dataset.recsysState = "ready";
      el.dataset.requestId = body.request_id;
      return track("impression", { request_id: body.request_id, placement: placement });
    }).catch(function (err) {
      el.replaceChildren();
      el.dataset.recsysState = "error";
      console.warn("recsys: " + kind + " list not shown", err);
    });
  }

  function renderAll() {
    document.querySelectorAll("[data-recsys]").forEach(function (el) {
      if (!el.dataset.recsysState) render(el);
    });
  }

  window.RecsysWidget = {
    render: render,
    renderCart: function (el, items) { return render(el, items); },
    track: track,
    sessionId: sessionId
  };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", renderAll);
  } else {
    renderAll();
  }
})();
