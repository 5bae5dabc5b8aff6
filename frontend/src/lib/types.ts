export interface Product {
  id: number;
  sku: string;
  name: string;
  description: string;
  price_cents: number;
  stock: number;
  category: string;
}

export interface ProductPage {
  items: Product[];
  page: number;
  limit: number;
  total: number;
}

export interface CartItem {
  product_id: number;
  name: string;
  price_cents: number;
  quantity: number;
  line_total_cents: number;
}

export interface Cart {
  id: string;
  items: CartItem[];
  total_cents: number;
  item_count: number;
}

export interface OrderItem {
  product_id: number;
  name: string;
  price_cents: number;
  quantity: number;
}

export interface Order {
  id: number;
  number: string;
  email: string;
  status: string;
  total_cents: number;
  items: OrderItem[];
  synthetic: boolean;
  created_at: string;
}

export interface ProductQuery {
  q?: string;
  category?: string;
  page?: number;
  limit?: number;
}
