from graphs.labels import UNIT, AxisAlgebra


def test_atoms_union_and_fix():
    alg = AxisAlgebra()
    a, b, c = alg.new(4), alg.new(4), alg.new(4)
    alg.unify(a, b, "t")
    assert alg.resolve(a) == alg.resolve(b) != alg.resolve(c)
    alg.unify(b, alg.fixed_atom(4, "input", "input"), "t")
    assert alg.is_fixed(a) and not alg.is_fixed(c)


def test_unit_and_size_one():
    alg = AxisAlgebra()
    one = alg.new(1)
    assert one[0] == "a" and alg.size(one) == 1  # a single channel is still a neuron
    assert alg.resolve(("p", (UNIT, alg.new(3), one)))[0] == "a"  # but carries no product structure


def test_product_common_refinement():
    alg = AxisAlgebra()
    g = alg.new(24)
    h, d = alg.new(4), alg.new(6)
    alg.unify(g, ("p", (h, d)), "heads")
    assert alg.resolve(g) == ("p", (alg.resolve(h), alg.resolve(d)))
    # another view of the same 24 units as 2 x 12 refines the factors
    x, y = alg.new(2), alg.new(12)
    alg.unify(g, ("p", (x, y)), "view")
    sizes = [alg.size(("a", a)) for a in alg.atoms(g)]
    assert sizes == [2, 2, 6]
    assert alg.size(g) == 24


def test_incompatible_reshape_fixes():
    alg = AxisAlgebra()
    p = ("p", (alg.new(2), alg.new(3)))
    q = ("p", (alg.new(3), alg.new(2)))
    alg.unify(p, q, "bad reshape")
    assert alg.is_fixed(p) and alg.is_fixed(q)


def test_concatenation_blocks_and_slicing():
    alg = AxisAlgebra()
    g = alg.new(10)
    blk = alg.blocks_at(g, 0, 4)
    assert alg.size(blk) == 4
    rest = alg.blocks_at(g, 4, 10)
    assert alg.resolve(g) == ("c", (alg.resolve(blk), alg.resolve(rest)))
    assert not alg.is_fixed(g)


def test_leading_concatenation_distributes_over_product():
    alg = AxisAlgebra()
    a, b, c = alg.new(2), alg.new(3), alg.new(5)
    lab = alg.resolve(("p", (("c", (a, b)), c)))
    assert lab[0] == "c" and [alg.size(x) for x in lab[1]] == [10, 15]


def test_fixed_atom_refined_stays_fixed():
    alg = AxisAlgebra()
    f = alg.fixed_atom(6, "input", "input")
    h, d = alg.new(2), alg.new(3)
    alg.unify(f, ("p", (h, d)), "split")
    assert alg.is_fixed(h) and alg.is_fixed(d)
