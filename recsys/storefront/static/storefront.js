/* The demo shop's own script: a cart kept in localStorage, add-to-cart and view events.
 * The recommendation lists come from recsys-widget.js, loaded before this script. */
(function () {
  "use strict";

  var CART_KEY = "recsys-demo.cart";

  function loadCart() {
    try {
      var cart = JSON.parse(localStorage.getItem(CART_KEY));
      return Array.isArray(cart) ? cart : [];
    } catch (err) {
      return [];
    }
  }

  function saveCart(cart) {
    localStorage.setItem(CART_KEY, JSON.stringify(cart));
    showCount(cart);
  }

  function showCount(cart) {
    var count = document.getElementById("cart-count");
    if (count) {
      count.textContent = String(cart.reduce(function (n, line) { return n + line.quantity; }, 0));
    }
  }

  function addToCart(button) {
    var cart = loadCart();
    var id = button.dataset.productId;
    var line = cart.find(function (l) { return l.product_id === id; });
    if (line) {
      line.quantity += 1;
    } else {
      cart.push({ product_id: id, quantity: 1, name: button.dataset.name,
                  price: button.dataset.price ? Number(button.dataset.price) : null });
    }
    saveCart(cart);
    RecsysWidget.track("add_to_cart", { product_id: id, quantity: 1 });
    document.getElementById("added").hidden = false;
  }

  function cell(tag, text) {
    var node = document.createElement(tag);
    node.textContent = text;
    return node;
  }

  function drawCart() {
    var cart = loadCart();
    var body = document.getElementById("cart-lines");
    body.replaceChildren();
    cart.forEach(function (line) {
      var row = document.createElement("tr");
      row.appendChild(cell("td", line.name || line.product_id));
      row.appendChild(cell("td", String(line.quantity)));
      row.appendChild(cell("td", line.price == null ? "" : (line.price * line.quantity).toFixed(2)));
      var remove = cell("button", "Remove");
      remove.type = "button";
      remove.addEventListener("click", function () {
        saveCart(loadCart().filter(function (l) { return l.product_id !== line.product_id; }));
        drawCart();
      });
      var last = document.createElement("td");
      last.appendChild(remove);
      row.appendChild(last);
      body.appendChild(row);
    });
    document.getElementById("cart-empty").hidden = cart.length > 0;
    document.getElementById("cart-table").hidden = cart.length === 0;
    RecsysWidget.renderCart(document.getElementById("cart-add-ons"), cart.map(function (line) {
      return { product_id: line.product_id, quantity: line.quantity };
    }));
  }

  showCount(loadCart());
  var button = document.getElementById("add-to-cart");
  if (button) {
    button.addEventListener("click", function () { addToCart(button); });
    RecsysWidget.track("view", { product_id: button.dataset.productId });
  }
  if (document.getElementById("cart-lines")) drawCart();
})();
