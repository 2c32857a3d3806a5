"""The demo shop's departments, leaf categories (product nouns, variants, prices), brands,
the leaves of the planted complements and substitutes, and the calendar weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TAXONOMY", "BRANDS", "COMPLEMENT_LEAVES", "SUBSTITUTE_LEAVES", "HOUR_WEIGHTS", "WEEKDAY_WEIGHTS", "MONTH_WEIGHTS"]


_COLOURS = ("Black", "White", "Grey", "Blue", "Red", "Green", "Navy", "Sand")


@dataclass(frozen=True)
class _Leaf:
    """A leaf category: path, product nouns and variants, median price, catalog share."""

    path: str
    nouns: tuple[str, ...]
    variants: tuple[str, ...]
    price: float
    share: float = 1.0
    joiner: str = " - "
    cycles: tuple[int, ...] = ()  # consumables: repurchase days per variant (pack size)


TAXONOMY: tuple[_Leaf, ...] = (
    # Home
    _Leaf("Home > Kitchen > Mugs", ("Ceramic Mug", "Travel Mug", "Espresso Cup", "Latte Mug"),
          _COLOURS, 12),
    _Leaf("Home > Kitchen > Kettles", ("Electric Kettle", "Glass Kettle", "Gooseneck Kettle"),
          ("1.0L", "1.5L", "1.7L"), 45, joiner=" "),
    _Leaf("Home > Kitchen > Coffee Machines",
          ("Espresso Machine", "Filter Coffee Maker", "Bean-to-Cup Machine", "Pod Machine"),
          ("Black", "Silver", "White"), 180),
    _Leaf("Home > Kitchen > Coffee Grinders", ("Burr Grinder", "Blade Grinder", "Hand Grinder"),
          ("Black", "Steel"), 60),
    _Leaf("Home > Pantry > Coffee Beans",
          ("Espresso Beans", "Filter Roast Beans", "Decaf Beans", "Single Origin Beans"),
          ("250g", "500g", "1kg"), 9, 0.9, " ", (14, 30, 60)),
    _Leaf("Home > Pantry > Coffee Filters", ("Paper Filters", "Cone Filters"),
          ("100 pack", "200 pack"), 4, 0.5, " ", (30, 60)),
    _Leaf("Home > Cleaning > Detergent",
          ("Laundry Detergent", "Dishwasher Tablets", "Washing-Up Liquid"),
          ("1L", "2L"), 7, 0.8, " ", (30, 60)),
    _Leaf("Home > Cleaning > Descalers", ("Descaler", "Descaling Tablets", "Kettle Descaler"),
          ("250ml", "500ml"), 9, joiner=" "),
    # Electronics
    _Leaf("Electronics > Phones > Smartphones", ("Nova Smartphone", "Pixelate Phone", "Orbit Phone"),
          ("64GB", "128GB", "256GB"), 450, joiner=" "),
    _Leaf("Electronics > Phones > Phone Cases",
          ("Silicone Case", "Leather Case", "Clear Case", "Rugged Case"), _COLOURS, 18),
    _Leaf("Electronics > Phones > Chargers", ("USB-C Charger", "Wireless Charger", "Car Charger"),
          ("20W", "30W", "65W"), 25, joiner=" "),
    _Leaf("Electronics > Audio > Headphones",
          ("Over-Ear Headphones", "Wireless Earbuds", "Noise-Cancelling Headphones"),
          ("Black", "White", "Blue"), 90),
    _Leaf("Electronics > Audio > Speakers", ("Bluetooth Speaker", "Smart Speaker", "Soundbar"),
          ("Black", "White", "Grey"), 80),
    _Leaf("Electronics > Computers > Laptops", ("Ultrabook", "Laptop", "Gaming Laptop"),
          ("13-inch", "14-inch", "15.6-inch"), 900, joiner=" "),
    _Leaf("Electronics > Computers > Laptop Bags",
          ("Laptop Sleeve", "Laptop Backpack", "Messenger Bag"), _COLOURS, 35),
    _Leaf("Electronics > Computers > Mice & Keyboards",
          ("Wireless Mouse", "Mechanical Keyboard", "Ergonomic Mouse", "Keyboard Combo"),
          ("Black", "White"), 30),
    _Leaf("Electronics > Computers > Printer Ink",
          ("Black Ink Cartridge", "Colour Ink Cartridge", "Toner Cartridge"),
          ("Standard", "XL"), 22, 0.7, " ", (30, 60)),
    _Leaf("Electronics > Accessories > Batteries", ("AA Batteries", "AAA Batteries"),
          ("4 pack", "12 pack"), 6, 0.5, " ", (30, 60)),
    # Pets
    _Leaf("Pets > Dogs > Dog Food", ("Adult Dog Food", "Puppy Food", "Grain-Free Dog Food"),
          ("2kg", "6kg", "12kg"), 14, 1.0, " ", (14, 30, 60)),
    _Leaf("Pets > Dogs > Leashes & Collars", ("Dog Leash", "Dog Collar", "Dog Harness"),
          _COLOURS, 20),
    _Leaf("Pets > Dogs > Dog Beds", ("Dog Bed", "Orthopedic Dog Bed", "Dog Cushion"),
          ("S", "M", "L"), 50, joiner=" "),
    _Leaf("Pets > Dogs > Dog Toys", ("Chew Toy", "Rope Toy", "Squeaky Ball"), _COLOURS, 9),
    _Leaf("Pets > Cats > Cat Food", ("Dry Cat Food", "Wet Cat Food Pouches", "Senior Cat Food"),
          ("1kg", "3kg", "7kg"), 10, 1.0, " ", (14, 30, 60)),
    _Leaf("Pets > Cats > Cat Litter", ("Clumping Litter", "Silica Litter", "Wood Litter"),
          ("5L", "10L", "20L"), 8, 0.8, " ", (14, 30, 60)),
    _Leaf("Pets > Cats > Litter Boxes", ("Litter Box", "Hooded Litter Box", "Corner Litter Box"),
          ("Grey", "White"), 35),
    _Leaf("Pets > Cats > Litter Accessories", ("Litter Mat", "Litter Scoop", "Litter Liners"),
          ("Grey", "Black"), 10),
    # Garden
    _Leaf("Garden > Tools > Lawn Mowers",
          ("Cordless Lawn Mower", "Petrol Lawn Mower", "Robot Mower"), ("32cm", "37cm", "42cm"),
          300, 0.8, " "),
    _Leaf("Garden > Tools > Mower Accessories", ("Replacement Blade", "Grass Catcher", "Mower Cover"),
          ("32cm", "37cm", "42cm"), 25, joiner=" "),
    _Leaf("Garden > Watering > Hoses", ("Garden Hose", "Expandable Hose", "Soaker Hose"),
          ("15m", "25m", "50m"), 30, joiner=" "),
    _Leaf("Garden > Watering > Hose Fittings", ("Spray Nozzle", "Hose Connector Set", "Hose Reel"),
          ("Green", "Black"), 12),
    _Leaf("Garden > Plants > Plant Food",
          ("Liquid Plant Feed", "Slow-Release Fertiliser", "Tomato Feed"), ("500ml", "1L"), 7,
          0.7, " ", (30, 60)),
    _Leaf("Garden > Outdoor Living > Barbecues", ("Charcoal Grill", "Gas Grill", "Kettle Barbecue"),
          ("Black", "Red"), 200, 0.8),
    _Leaf("Garden > Outdoor Living > Barbecue Tools",
          ("Grill Tool Set", "Grill Brush", "Meat Thermometer"), ("Steel", "Black"), 20),
    # Sports
    _Leaf("Sports > Fitness > Yoga Mats", ("Yoga Mat", "Travel Yoga Mat", "Thick Exercise Mat"),
          _COLOURS, 30),
    _Leaf("Sports > Fitness > Yoga Accessories", ("Yoga Block", "Yoga Strap", "Mat Bag"),
          _COLOURS, 12),
    _Leaf("Sports > Nutrition > Protein", ("Whey Protein", "Vegan Protein", "Protein Bars"),
          ("500g", "1kg", "2kg"), 18, 0.9, " ", (14, 30, 60)),
    _Leaf("Sports > Cycling > Bikes", ("Road Bike", "Mountain Bike", "City Bike", "E-Bike"),
          ("S", "M", "L"), 700, joiner=" "),
    _Leaf("Sports > Cycling > Helmets", ("Bike Helmet", "MTB Helmet"), ("S", "M", "L"), 60,
          joiner=" "),
    _Leaf("Sports > Cycling > Bike Lights", ("Bike Light Set", "Rear Light", "Front Light"),
          ("USB", "Battery"), 25, joiner=" "),
    _Leaf("Sports > Running > Running Shoes", ("Running Shoes", "Trail Running Shoes"),
          ("EU 40", "EU 42", "EU 44", "EU 46"), 110, joiner=" "),
    _Leaf("Sports > Running > Running Socks", ("Running Socks", "Compression Socks"),
          ("S", "M", "L"), 12, joiner=" "),
)


BRANDS: dict[str, tuple[str, ...]] = {
    "Home": ("Nordhaus", "Casa Verde", "Brewline", "Kitchenly", "Hearth & Co", "Purelle"),
    "Electronics": ("Voltix", "Nimbus", "Quanta", "Orbitron", "Lumen", "Arcwave"),
    "Pets": ("Pawsome", "Whisker & Tail", "Barkley", "Furrendo", "Happy Paws", "Purrfect"),
    "Garden": ("Greenfield", "Rootwell", "Terra", "Bloomgard", "Yardline", "Verdant"),
    "Sports": ("Stridex", "Peakform", "Velotrek", "Zenflow", "Apexa", "Trailborn"),
}


# (leaf of a, leaf of b): b completes a; planted pairs cycle through this list.
COMPLEMENT_LEAVES: tuple[tuple[str, str], ...] = (
    ("Coffee Machines", "Descalers"),
    ("Smartphones", "Phone Cases"),
    ("Laptops", "Laptop Bags"),
    ("Bikes", "Helmets"),
    ("Lawn Mowers", "Mower Accessories"),
    ("Hoses", "Hose Fittings"),
    ("Barbecues", "Barbecue Tools"),
    ("Yoga Mats", "Yoga Accessories"),
    ("Running Shoes", "Running Socks"),
    ("Litter Boxes", "Litter Accessories"),
    ("Kettles", "Descalers"),
    ("Smartphones", "Chargers"),
    ("Laptops", "Mice & Keyboards"),
    ("Bikes", "Bike Lights"),
    ("Dog Beds", "Dog Toys"),
    ("Coffee Machines", "Coffee Grinders"),
    ("Coffee Machines", "Mugs"),
    ("Headphones", "Chargers"),
    ("Leashes & Collars", "Dog Toys"),
    ("Kettles", "Mugs"),
)


SUBSTITUTE_LEAVES: tuple[str, ...] = (
    "Kettles", "Headphones", "Speakers", "Coffee Machines", "Dog Beds", "Running Shoes",
    "Smartphones", "Coffee Grinders", "Yoga Mats", "Phone Cases", "Barbecues", "Laptop Bags",
    "Laptops", "Leashes & Collars", "Mugs",
)


HOUR_WEIGHTS = np.array([0.6, 0.35, 0.2, 0.15, 0.15, 0.25, 0.5, 1.0, 1.5, 1.8, 2.0, 2.2,
                          2.6, 2.5, 2.2, 2.1, 2.2, 2.5, 3.0, 3.5, 3.7, 3.2, 2.2, 1.2])


WEEKDAY_WEIGHTS = np.array([1.0, 0.97, 0.97, 1.0, 1.05, 1.15, 1.2])  # Monday first


MONTH_WEIGHTS = np.array([0.9, 0.85, 0.95, 0.95, 1.0, 0.95, 0.9, 0.9, 1.0, 1.05, 1.3, 1.45])
